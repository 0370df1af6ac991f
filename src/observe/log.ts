/**
 * Logging: pino JSON lines on stdout (what operators tail), or a compact text
 * form for humans. One logger is built by the CLI and passed down; no globals.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type LogFormat = 'json' | 'text';
export type { Logger };

export interface LogOptions {
  readonly level?: string;
  readonly format?: LogFormat;
  readonly destination?: DestinationStream | NodeJS.WritableStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? 'info';
  if (opts.format === 'text') return pino({ level, base: undefined }, textStream((opts.destination as NodeJS.WritableStream) ?? process.stdout));
  // Synchronous stdout so an init container's last lines are never lost on exit.
  return pino({ level, base: undefined }, (opts.destination as DestinationStream) ?? pino.destination({ fd: 1, sync: true }));
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** `HH:MM:SS.mmm LEVEL msg key=value ...` */
function textStream(out: NodeJS.WritableStream): DestinationStream {
  return {
    write(line: string) {
      const o = JSON.parse(line) as Record<string, unknown>;
      const { time, level, msg, ...rest } = o;
      const t = new Date(time as number).toISOString().slice(11, 23);
      const kv = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      out.write(`${t} ${LEVELS[level as number] ?? level} ${msg ?? ''}${kv.length ? ' ' + kv.join(' ') : ''}\n`);
    },
  };
}
