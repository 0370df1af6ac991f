/**
 * The download half of a tunnel: upstream reads go straight to the client.
 *
 * A copy per byte costs as much as the kernel's own two, so the read buffers
 * are chosen per read:
 * - small reads (interactive traffic, idle tunnels) land in one buffer shared
 *   by every tunnel and are copied out; an idle tunnel then holds no memory;
 * - after a large read the next one lands in a chunk of its own, handed to the
 *   client write as is (no copy) and returned to a free list when the write
 *   has completed.
 * At most MAX_ARMED chunks wait as read buffers at any time, so thousands of
 * tunnels that went quiet after a download hold a bounded amount of memory;
 * past that, tunnels fall back to the shared buffer and a copy.
 */
import type net from 'node:net';

/** Stream buffer per direction: node's default 16 KiB paused the reader on every 64 KiB read. */
export const TUNNEL_HWM = 256 * 1024;

const CHUNK = 256 * 1024;
/** A read at least this large suggests a bulk transfer: the next read gets a chunk. */
const BULK_READ = 32 * 1024;
const MAX_ARMED = 64;
/** Small reads in a row after which a tunnel goes back to the shared buffer. */
const SMALL_RUN = 4;
const MAX_FREE = 64;

const SHARED = Buffer.allocUnsafe(1024 * 1024);
const free: Buffer[] = [];
let armed = 0;

function take(): Buffer {
  if (armed >= MAX_ARMED) return SHARED;
  armed++;
  return free.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
}

function release(chunk: Buffer): void {
  if (free.length < MAX_FREE) free.push(chunk);
}

/** For tests and metrics: chunks waiting as read buffers, and chunks on the free list. */
export function pumpStats(): { armed: number; free: number; maxArmed: number } {
  return { armed, free: free.length, maxArmed: MAX_ARMED };
}

/** Options for net.connect: reads from the upstream socket are written to `client`. */
export function downloadTo(client: net.Socket): { onread: object; disarm(): void } {
  let next: Buffer = SHARED;
  let small = 0;
  const onread = {
    buffer(): Buffer {
      return next;
    },
    callback(n: number, b: Buffer): boolean {
      let ok: boolean;
      if (b === SHARED) {
        ok = client.write(Buffer.from(b.subarray(0, n)));
      } else {
        armed--;
        ok = client.write(b.subarray(0, n), () => release(b));
      }
      // Chosen now, returned by buffer() which node calls right after this.
      // A bulk transfer has the odd small read (the socket was drained
      // early): stay on chunks until SMALL_RUN small reads in a row, or the
      // next large read lands in the shared buffer and costs a copy.
      small = n >= BULK_READ ? 0 : small + 1;
      next = small === 0 || (b !== SHARED && small < SMALL_RUN) ? take() : SHARED;
      return ok;
    },
  };
  return {
    onread,
    /** The socket closed: its waiting read buffer goes back. */
    disarm() {
      if (next !== SHARED) { armed--; release(next); next = SHARED; }
    },
  };
}
