/**
 * Batched line output for busy engines. A proxy writes a line per request; a
 * write(2) per line cost a fifth of the proxy's throughput, and pino's
 * asynchronous destination hands each batch to a libuv worker thread (a
 * cross-CPU wake-up per batch). Here lines written during one event-loop turn
 * go out in one synchronous write when the turn ends (setImmediate): no line
 * waits longer than the turn that wrote it, and nothing is lost at exit.
 */
import fs from 'node:fs';

/** Past this, write at once rather than grow the buffer. */
const MAX_PENDING = 64 * 1024;

export interface LineSink {
  write(line: string): void;
  /** Write what is pending now (pino's logger.flush passes a callback). */
  flush(cb?: () => void): void;
}

export function createLineSink(fd = 1): LineSink {
  let pending = '';
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending === '') return;
    const data = Buffer.from(pending);
    pending = '';
    writeAll(fd, data);
  };
  process.once('exit', flush);
  return {
    write(line) {
      pending += line;
      if (pending.length >= MAX_PENDING) flush();
      else if (!scheduled) { scheduled = true; setImmediate(flush); }
    },
    flush(cb) { flush(); cb?.(); },
  };
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Whole buffer, through partial writes and EAGAIN (stdout may be a non-blocking pipe). */
function writeAll(fd: number, data: Buffer): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // A reader that went away (EPIPE) or a closed stdout: drop the lines, never crash the proxy.
      if (code !== 'EAGAIN') return;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
