/**
 * What every command gets from the CLI wiring: the environment (with
 * `<VAR>_FILE` already resolved lazily by the grammars' callers) and a way to
 * build the logger the user asked for. No globals: engines receive these.
 */
import type { Command } from 'commander';
import type { Env } from '../config/env.js';
import { createLogger, type LogFormat, type Logger } from '../observe/log.js';

export interface CliContext {
  readonly env: Env;
  /** Logger honouring --log-format and the given level. */
  logger(level?: string): Logger;
}

export function contextFrom(program: Command, env: Env): CliContext {
  return {
    env,
    logger(level) {
      const format = (program.opts().logFormat as LogFormat | undefined) ?? 'json';
      return createLogger({ format, level: level ?? 'info' });
    },
  };
}

/** Appended to --help: the environment variables a command reads. */
export function envHelp(vars: Record<string, string>): string {
  const w = Math.max(...Object.keys(vars).map((k) => k.length));
  return '\nEnvironment variables:\n' + Object.entries(vars).map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/**
 * A command's flags merged into the environment (a flag wins over its
 * variable), so the part's config function reads one source; `from` maps each
 * variable a flag set to that flag, for messages naming what was typed.
 */
export function withFlags<K extends string>(env: Env, table: Readonly<Record<K, readonly [string, string]>>, flags: Partial<Record<K, string>>): { env: Env; from: Record<string, string> } {
  const out: Record<string, string | undefined> = { ...env };
  const from: Record<string, string> = {};
  for (const k of Object.keys(table) as K[]) {
    const v = flags[k];
    if (v === undefined) continue;
    const [flag, name] = table[k];
    out[name] = v;
    from[name] = flag;
  }
  return { env: out, from };
}
