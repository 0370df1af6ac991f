/**
 * One request and its response on a client connection (front.ts): the
 * request body handed on as an async iterable with backpressure, the
 * response framed here (length, chunked or close), keep-alive decided here.
 */
import { STATUS_CODES } from 'node:http';
import type net from 'node:net';
import { ChunkedDecoder, type RequestHead } from './http1.js';
import { BodySource } from './body.js';
import type { Runtime } from './runtime.js';

type Headers = Record<string, string | string[] | undefined>;

/** What an exchange needs of its connection. */
export interface ExchangeHost {
  readonly sock: net.Socket;
  readonly rt: Runtime;
  readonly client: string;
  /** The response has been written; reuse: the connection may serve the next request. */
  done(ex: Exchange, reuse: boolean): void;
}

/** One request and its response, as the forwarding code sees them. */
export class Exchange {
  readonly body: BodySource | null;
  bodyFeed: ((d: Buffer) => void) | undefined;
  leftover: Buffer | undefined;
  headersSent = false;
  private framing: 'length' | 'chunked' | 'close' | 'none' = 'none';
  private pendingHead: string | undefined;
  private keepAlive: boolean;
  private ended = false;
  private goneHandler: (() => void) | undefined;

  constructor(private readonly conn: ExchangeHost, readonly head: RequestHead) {
    this.keepAlive = head.keepAlive;
    this.body = head.bodyLength === 0 ? null : new BodySource(conn.sock);
  }

  get client(): string { return this.conn.client; }
  get bytesIn(): number { return this.body?.bytes ?? 0; }

  /** Wire the request body (if any) to the bytes after the head. */
  start(rest: Buffer): void {
    const body = this.body;
    if (!body) { this.leftover = rest.length ? rest : undefined; return; }
    if (this.head.bodyLength > 0) {
      let left = this.head.bodyLength;
      this.bodyFeed = (d) => {
        const n = Math.min(left, d.length);
        if (n > 0) body.push(d.subarray(0, n));
        left -= n;
        if (left === 0) { this.bodyFeed = undefined; body.end(); if (n < d.length) this.leftover = d.subarray(n); }
      };
    } else {
      const dec = new ChunkedDecoder();
      this.bodyFeed = (d) => {
        const at = dec.push(d, (c) => body.push(c));
        if (at === -2) { this.bodyFeed = undefined; body.fail(new Error(`bad chunked body: ${dec.error}`)); this.keepAlive = false; return; }
        if (at >= 0) { this.bodyFeed = undefined; body.end(); if (at < d.length) this.leftover = d.subarray(at); }
      };
    }
    if (rest.length > 0) this.bodyFeed(rest);
  }

  /**
   * The request is going upstream: a client waiting on "Expect: 100-continue"
   * may send its body now. Not sent for requests refused before that, so a
   * denied upload is never transferred.
   */
  proceed(): void {
    if (this.head.expectContinue && this.bodyFeed && !this.headersSent) this.conn.sock.write('HTTP/1.1 100 Continue\r\n\r\n');
  }

  /** The response head; written with the first body bytes (one write for small responses). */
  respond(status: number, statusText: string | undefined, headers: Headers): void {
    const method = this.head.method;
    const noBody = method === 'HEAD' || status === 204 || status === 304 || status < 200;
    let h = `HTTP/1.1 ${status} ${statusText || STATUS_CODES[status] || ''}\r\n`;
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) h += `${k}: ${x}\r\n`;
      else h += `${k}: ${v}\r\n`;
    }
    if (headers['content-length'] !== undefined) this.framing = noBody ? 'none' : 'length';
    else if (noBody) this.framing = 'none';
    else if (this.head.version === 11) { this.framing = 'chunked'; h += 'transfer-encoding: chunked\r\n'; }
    else { this.framing = 'close'; this.keepAlive = false; }
    // A request body not read to its end leaves the connection unusable.
    if (this.bodyFeed || this.conn.rt.draining) this.keepAlive = false;
    if (!this.keepAlive) h += 'connection: close\r\n';
    else if (this.head.version === 10) h += 'connection: keep-alive\r\n';
    this.pendingHead = h + '\r\n';
    this.headersSent = true;
  }

  write(chunk: Buffer): boolean {
    const s = this.conn.sock;
    if (this.framing === 'none' || chunk.length === 0) return true;
    s.cork();
    if (this.pendingHead) { s.write(this.pendingHead, 'latin1'); this.pendingHead = undefined; }
    let ok: boolean;
    if (this.framing === 'chunked') {
      s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
    } else ok = s.write(chunk);
    s.uncork();
    return ok;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const s = this.conn.sock;
    let tail = this.pendingHead ?? '';
    this.pendingHead = undefined;
    if (this.framing === 'chunked') tail += '0\r\n\r\n';
    if (tail) s.write(tail, 'latin1');
    this.conn.done(this, this.keepAlive && this.framing !== 'close' && !this.bodyFeed);
  }

  /** A short text answer from the proxy itself. */
  reply(status: number, text: string, via: string): void {
    if (this.headersSent) return this.abort();
    this.respond(status, undefined, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(text)), via });
    this.write(Buffer.from(text));
    this.end();
  }

  onDrain(cb: () => void): void { this.conn.sock.once('drain', cb); }
  onGone(cb: () => void): void { this.goneHandler = cb; }
  abort(): void { this.ended = true; this.conn.sock.destroy(); }

  clientGone(): void {
    this.body?.fail(new Error('client went away'));
    if (!this.ended) this.goneHandler?.();
  }

  /** The client half-closed: a body still expected will not come. */
  clientEnded(): void {
    if (this.bodyFeed) { this.bodyFeed = undefined; this.body?.fail(new Error('request body cut short')); this.keepAlive = false; }
  }
}
