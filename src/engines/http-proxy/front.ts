/**
 * One client connection: request heads parsed on the raw socket (http1.ts),
 * one request at a time (pipelined requests wait in the buffer), each an
 * Exchange (exchange.ts: its body and its response). CONNECT hands the socket
 * over to the tunnel code.
 *
 * Deadlines: a request head must be complete within headersTimeoutMs of its
 * first byte (of the connection, for the first request): slowloris clients get
 * 408. Between requests a keep-alive connection may idle keepAliveTimeoutMs.
 * In any state, idleTimeoutMs without a byte either way ends the connection.
 */
import type net from 'node:net';
import { closingReply, parseRequestHead, type HeadResult } from './http1.js';
import { Exchange } from './exchange.js';
import { clientAddress } from './logline.js';
import type { Runtime } from './runtime.js';
import { Progress, sweepEvery } from '../sweep.js';

export interface Handlers {
  request(ex: Exchange): void;
  connect(target: string, sock: net.Socket, head: Buffer, client: string, host: TunnelHost): void;
}

type HeadOk = Extract<HeadResult, { kind: 'ok' }>;

/**
 * A request refused before any decision (400, 408, 431, 501, 505): its access
 * line (as squid logs error:invalid-request), and the closing reply to send.
 * Shared with the fast path (fast.ts), which reads first heads in C.
 */
export function headError(rt: Runtime, client: string, status: number, reason: string): string {
  rt.access.request({ client, method: '-', target: '-', decision: 'error', status, reason, bytesIn: 0, bytesOut: 0 });
  return closingReply(status, `${reason}\n`);
}

/**
 * The connections of one listener and their deadlines. Deadlines are numbers
 * checked by one sweep timer (as node:http does), not a timer per request:
 * arming and clearing timers twice per request cost more than parsing. The
 * idle limit and a tunnel's connect timeout are swept too (a socket timeout
 * was a timer armed per connection and refreshed on every read and write).
 */
export class Fronts {
  private readonly conns = new Set<Connection>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly rt: Runtime, private readonly h: Handlers, private readonly onClose: (sock: net.Socket) => void) {
    const L = rt.limits;
    this.sweep = setInterval(() => this.check(), sweepEvery(L.headersTimeoutMs, L.keepAliveTimeoutMs, L.idleTimeoutMs, L.connectTimeoutMs)).unref();
  }

  /**
   * Serve a client connection. From the fast path (fast.ts): the client's
   * address as accepted, and the bytes read so far with their complete head,
   * parsed already (it is not a CONNECT).
   */
  serve(sock: net.Socket, client?: string, first?: Buffer, head?: HeadOk): void {
    const c = new Connection(this.rt, sock, this.h, this, client ?? clientAddress(sock));
    this.conns.add(c);
    if (first && head) c.begin(first, head);
  }

  /** The socket closed (the one 'close' listener of a connection). */
  closed(c: Connection): void {
    this.conns.delete(c);
    this.onClose(c.sock);
  }

  close(): void {
    clearInterval(this.sweep);
  }

  /** Cut every connection now. */
  destroy(): void {
    for (const c of this.conns) c.sock.destroy();
  }

  /** A drain began: connections waiting for a request end now; the others once their exchange is done. */
  drain(): void {
    for (const c of this.conns) c.drainIfIdle();
  }

  private check(): void {
    const now = performance.now();
    const idle = this.rt.limits.idleTimeoutMs;
    for (const c of this.conns) {
      if (c.deadline !== 0 && c.deadline <= now) c.expired();
      // No byte either way for the idle limit, in any state (tunnels too: all
      // their bytes pass through the client socket).
      else if (c.progress.stalled(c.sock.bytesRead + c.sock.bytesWritten, now, idle)) c.sock.destroy();
    }
  }
}

/** What a tunnel sees of its client connection: the swept deadline of its connect. */
export interface TunnelHost {
  deadline: number;
  onDeadline: (() => void) | undefined;
}

// Listeners shared by every connection (the socket's owner is found through
// a symbol) instead of closures allocated per connection.
const OWNER = Symbol('connection');
type Owned = net.Socket & { [OWNER]: Connection };
function onSockData(this: Owned, d: Buffer): void { this[OWNER].onData(d); }
function onSockEnd(this: Owned): void { const c = this[OWNER]; if (!c.ex) this.end(); else c.ex.clientEnded(); }
function onSockClose(this: Owned): void { this[OWNER].onClose(); }

class Connection implements TunnelHost {
  private buf: Buffer | undefined;
  ex: Exchange | undefined;
  /** performance.now() by which the current wait must end; 0: none. */
  deadline = 0;
  /** A tunnel's connect timeout (set by the CONNECT handler). */
  onDeadline: (() => void) | undefined;
  readonly progress = new Progress();
  /** Waiting for a request head (408 at the deadline), or idle between requests (close). */
  private waiting: 'head' | 'idle' = 'head';
  /** Handed to the CONNECT handler: no longer ours to end. */
  private tunnel = false;

  constructor(readonly rt: Runtime, readonly sock: net.Socket, private readonly h: Handlers, private readonly fronts: Fronts, readonly client: string) {
    (sock as Owned)[OWNER] = this;
    sock.on('data', onSockData);
    sock.on('end', onSockEnd);
    sock.on('close', onSockClose);
    this.deadline = performance.now() + rt.limits.headersTimeoutMs;
  }

  onClose(): void {
    this.deadline = 0;
    this.ex?.clientGone();
    this.fronts.closed(this);
  }

  /** Idle between requests (or not one byte yet): end it. A tunnel or a request in flight finishes first. */
  drainIfIdle(): void {
    if (this.ex || this.tunnel || (this.buf && this.buf.length > 0)) return;
    this.deadline = 0;
    this.sock.end();
    this.sock.destroySoon();
  }

  expired(): void {
    this.deadline = 0;
    if (this.tunnel) { this.onDeadline?.(); return; }
    if (this.waiting === 'head') this.fail(408, 'request headers not received in time');
    else this.sock.destroy();
  }

  onData(d: Buffer): void {
    if (this.ex?.bodyFeed) { this.ex.bodyFeed(d); return; }
    this.buf = this.buf ? Buffer.concat([this.buf, d]) : d;
    if (this.ex) {
      // Pipelined bytes while a request is in flight: hold them, and stop
      // reading if a client floods.
      if (this.buf.length > this.rt.limits.maxHeaderBytes) this.sock.pause();
      return;
    }
    if (this.waiting === 'idle') { this.waiting = 'head'; this.deadline = performance.now() + this.rt.limits.headersTimeoutMs; }
    this.parse();
  }

  private parse(): void {
    const buf = this.buf;
    if (!buf) return;
    const r = parseRequestHead(buf, 0, this.rt.limits.maxHeaderBytes);
    if (r.kind === 'incomplete') return;
    if (r.kind === 'error') return this.fail(r.status, r.reason);
    this.begin(buf, r);
  }

  /** A complete request head at the start of buf. */
  begin(buf: Buffer, r: HeadOk): void {
    this.deadline = 0;
    const rest = buf.subarray(r.end);
    this.buf = undefined;
    const head = r.head;
    if (head.method === 'CONNECT') {
      // Paused first: a flowing socket without a 'data' listener drops bytes.
      this.sock.pause();
      this.sock.off('data', onSockData);
      this.sock.off('end', onSockEnd);
      this.tunnel = true;
      this.h.connect(head.target, this.sock, rest, this.client, this);
      return;
    }
    const ex = new Exchange(this, head);
    this.ex = ex;
    ex.start(rest);
    this.h.request(ex);
  }

  /** Called by the exchange when its response has been written. */
  done(ex: Exchange, reuse: boolean): void {
    this.ex = undefined;
    if (!reuse || this.rt.draining || this.sock.destroyed || this.sock.readableEnded) { this.sock.end(); this.sock.destroySoon(); return; }
    if (ex.leftover) this.buf = this.buf ? Buffer.concat([ex.leftover, this.buf]) : ex.leftover;
    if (this.sock.isPaused()) this.sock.resume();
    if (this.buf && this.buf.length > 0) {
      this.waiting = 'head';
      this.deadline = performance.now() + this.rt.limits.headersTimeoutMs;
      this.parse();
      return;
    }
    this.buf = undefined;
    // Idle between requests: the keep-alive limit, then the header deadline from the first byte.
    this.waiting = 'idle';
    this.deadline = performance.now() + this.rt.limits.keepAliveTimeoutMs;
  }

  /** A bad or late request: answer it and close, nothing more is read. */
  fail(status: number, reason: string): void {
    this.deadline = 0;
    this.sock.removeAllListeners('data');
    const reply = headError(this.rt, this.client, status, reason);
    if (this.sock.writable) this.sock.end(reply);
    this.sock.destroySoon();
  }
}
