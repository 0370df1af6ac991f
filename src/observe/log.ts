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
  const dest = (opts.destination as DestinationStream) ?? pino.destination({ fd: 1, sync: true });
  const logger = pino({ level, base: undefined }, dest);
  JSON_DEST.set(logger, dest);
  return logger;
}

/** JSON loggers and their destinations: a hot path may write its lines itself. */
const JSON_DEST = new WeakMap<Logger, DestinationStream>();

export type Fields = Record<string, string | number | undefined>;

/** Strings JSON writes as they are: no quote, backslash, control character or surrogate. */
const PLAIN = /^[^"\\\x00-\x1f\ud800-\udfff]*$/;

/**
 * An info-level writer for one hot event (a request's end): the same line
 * pino would write, `{"level":30,"time":…,<fields>,"msg":…}`, built as one
 * string instead of through pino's generic serialiser (a tenth of the HTTP
 * proxy's time). Undefined fields are left out, as pino does. Text loggers
 * get pino itself.
 */
export function infoWriter(logger: Logger, msg: string): (fields: Fields) => void {
  const dest = JSON_DEST.get(logger);
  if (!dest) return (fields) => logger.info(fields, msg);
  const tail = `,"msg":${JSON.stringify(msg)}}\n`;
  return (fields) => {
    if (!logger.isLevelEnabled('info')) return;
    let s = '{"level":30,"time":' + Date.now();
    for (const k in fields) {
      const v = fields[k];
      if (v === undefined) continue;
      // Appended piece by piece: each template or JSON.stringify result was
      // one more string per field, the largest share of the proxy's garbage.
      s += ',"' + k + '":';
      if (typeof v === 'number') s += Number.isFinite(v) ? v : 'null';
      else if (PLAIN.test(v)) s += '"' + v + '"';
      else s += JSON.stringify(v);
    }
    dest.write(s + tail);
  };
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
