/** A client's request body, handed to undici as an async iterable. */
import type net from 'node:net';

/** Above this many queued request-body bytes the client socket is paused. */
const BODY_HWM = 256 * 1024;

/** A request body as undici reads it: pull-based, pausing the client socket when undici is slower. */
export class BodySource implements AsyncIterable<Buffer> {
  bytes = 0;
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly sock: net.Socket) {}

  push(b: Buffer): void {
    this.queue.push(b);
    this.queued += b.length;
    if (this.queued > BODY_HWM) this.sock.pause();
    this.signal();
  }

  end(): void { this.ended = true; this.signal(); }
  fail(e: Error): void { if (!this.ended) { this.error ??= e; this.signal(); } }

  private signal(): void { const w = this.wake; this.wake = undefined; w?.(); }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      const b = this.queue.shift();
      if (b) {
        this.queued -= b.length;
        if (this.queued <= BODY_HWM / 2 && this.sock.isPaused()) this.sock.resume();
        this.bytes += b.length;
        yield b;
        continue;
      }
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((r) => { this.wake = r; });
    }
  }
}
