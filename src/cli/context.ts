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
