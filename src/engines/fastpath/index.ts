/**
 * The native fast path (native/fastpath/fastpath.c), typed. One loop per
 * process, nested in Node's event loop; each engine listener registers a
 * handler and gets the events of its connections. C accepts, reads request
 * heads, connects and relays; every decision (which address, allowed or not,
 * what is logged and counted) is the handler's. Connection ids are numbers;
 * a stale id (closed, adopted, or never issued) is ignored by every verb.
 *
 * Events may come synchronously from inside a verb (destroy() and end() can
 * call closed() before they return); a connection is gone for every verb from
 * the moment its closed() begins (peer() excepted). Relaying: per direction,
 * bytes are read only when the last read's bytes have all been written
 * (backpressure: at most 64 KiB waits in C), a FIN is passed on once written
 * (half-close), and the connection ends when both directions have ended, on
 * the idle timeout, or on an error: then the other side gets a reset, not a
 * FIN, so that a stream cut short never looks complete.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import type { FastpathWanted } from '../../config/fastpath.js';

/** Why a connection ended (the `reason` of closed()). */
export const REASONS = ['closed', 'client error', 'remote error', 'idle timeout', 'ended', 'client closed', 'shutdown'] as const;
export type Reason = (typeof REASONS)[number];

export const enum Reasons { Closed = 0, ClientError, RemoteError, Idle, Ended, ClientClosed, Shutdown }

export interface FastHandler {
  /**
   * A client was accepted (peer() tells who). Relay mode: connect(), end() or destroy() it, now or later.
   * Head mode: reading its head follows, unless the handler ends it here (a connection cap, a client allow-list).
   */
  accept(id: number): void;
  /**
   * Head mode: everything the client sent so far (each call repeats the earlier bytes). Return true when more
   * bytes are needed; otherwise connect(), end(), adopt() or destroy() it, now or later (C reads nothing more
   * until then, so these bytes are all there is). A FIN right after the head still lets the head be answered.
   * At most maxHead bytes are read: true returned with bytes.length === maxHead waits for headTimeout.
   */
  head?(id: number, bytes: Buffer): boolean;
  /** Head mode: no complete head within headMs (`bytes` read so far); end() it with an answer. Without it: destroy(). */
  headTimeout?(id: number, bytes: number): void;
  /** One connect attempt failed (code as Node names it: ECONNREFUSED, ETIMEDOUT...). Others may still be running. */
  connectFailed(id: number, attempt: number, code: string): void;
  /** An attempt is unanswered after its raceMs: a second address may be tried beside it. */
  connectSlow?(id: number, attempt: number): void;
  /** An attempt connected (the others were closed); relaying has begun. Not called for quiet connects. */
  connected?(id: number, attempt: number): void;
  /**
   * The connection is gone; totals over its life: fromClient counts the head's bytes (a tunnel's payload is
   * fromClient - rest), toClient the onConnect bytes and a reply. `code`: the errno behind 'client error',
   * 'remote error' (ECONNRESET...) or a reset before relaying. Called exactly once per accepted id, adopt() excepted.
   */
  closed(id: number, fromClient: number, toClient: number, reason: Reasons, code?: string): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  /** 'relay': accept() then the handler connects; 'head': the request head is read first (HTTP). */
  mode: 'relay' | 'head';
  backlog?: number;
  /** No byte either way for this long ends a relayed connection; 0: never. */
  idleMs?: number;
  /** Head mode: the deadline for a complete head, from accept; 0: none. */
  headMs?: number;
  /** Head mode: bytes read at most before the handler must decide (default 64 KiB). */
  maxHead?: number;
}

export interface ConnectOptions {
  localAddress?: string;
  timeoutMs: number;
  /** connectSlow() after this long without an answer; 0: never. */
  raceMs?: number;
  /** Written to the client once connected (a CONNECT's 200), before any relayed byte. Taken from the first attempt. */
  onConnect?: Buffer;
  /** Head mode: where the payload starts in the head bytes (what follows is sent upstream first). Taken from the first attempt. */
  rest?: number;
  /** No connected() event (the handler has nothing to do then). */
  quiet?: boolean;
}

interface NativeLoop {
  listen(host: string, port: number, mode: number, backlog: number, idleMs: number, headMs: number, maxHead: number): number;
  port(lid: number): number;
  closeListener(lid: number): void;
  connect(id: number, address: string, port: number, local: string | null, timeoutMs: number, raceMs: number, onConnect: Buffer | null, rest: number, quiet: boolean): number | string;
  cancel(id: number, attempt: number): void;
  end(id: number, reply: Buffer | null): void;
  destroy(id: number): void;
  adopt(id: number): number;
  peer(id: number): [string, number] | undefined;
  drainIdle(lid: number): void;
  destroyAll(lid: number): void;
  sweepEvery(ms: number): void;
  active(): number;
  close(): void;
}

type NativeModule = { Loop: new (cb: (type: number, id: number, lid: number, a: unknown, b: unknown, c: unknown, d: unknown) => unknown) => NativeLoop };

let native: NativeModule | undefined;
let loadError: string | undefined;
function load(): NativeModule | undefined {
  if (native || loadError) return native;
  try {
    native = createRequire(import.meta.url)('egress-router-fastpath') as NativeModule;
  } catch (e) {
    loadError = (e as Error).message.split('\n')[0];
  }
  return native;
}

/** Whether the engines use the fast path: 'on' without the addon is an error (thrown, one line). */
export function useFastpath(wanted: FastpathWanted): boolean {
  if (wanted === 'off') return false;
  if (load()) return true;
  if (wanted === 'on') throw new Error(`EGRESS_FASTPATH=1 but the native fast path is not built: ${loadError}`);
  return false;
}

/** Which carrier the user-space engines will use, in words (check, start-up lines). */
export function carrierText(wanted: FastpathWanted): string {
  if (useFastpath(wanted)) return 'native fast path';
  return wanted === 'off' ? 'node sockets (EGRESS_FASTPATH=0)' : `node sockets (native fast path not built: ${loadError})`;
}

export class FastPath {
  private readonly handlers: (FastHandler | undefined)[] = [];
  private readonly loop: NativeLoop;
  private sweepMs = 100;

  constructor() {
    const m = load();
    if (!m) throw new Error(`native fast path not built: ${loadError}`);
    const hs = this.handlers;
    // One callback for every event of every listener (argument order: see native/fastpath/binding.c).
    this.loop = new m.Loop((type, id, lid, a, b, c, d) => {
      const h = hs[lid];
      if (!h) return undefined;
      switch (type) {
        case 1: return h.accept(id);
        case 2: return h.head?.(id, a as Buffer) === true;
        case 3: return h.connectFailed(id, a as number, b as string);
        case 4: return h.connectSlow?.(id, a as number);
        case 5: return h.connected?.(id, a as number);
        case 6: return h.closed(id, a as number, b as number, c as Reasons, d as string | undefined);
        case 7: return h.headTimeout ? h.headTimeout(id, a as number) : this.loop.destroy(id);
        default: return undefined;
      }
    });
  }

  /** Listen; throws an Error with the errno's code (EADDRINUSE...; EBADF once closed). Returns the listener id. */
  listen(h: FastHandler, o: ListenOptions): number {
    const lid = this.loop.listen(o.host, o.port, o.mode === 'head' ? 1 : 0, o.backlog ?? 511, o.idleMs ?? 0, o.headMs ?? 0, o.maxHead ?? 0);
    this.handlers[lid] = h;
    return lid;
  }

  /** Deadlines are checked this often (the shortest wanted by any listener wins). */
  sweepEvery(ms: number): void {
    const v = Math.max(10, Math.min(1000, Math.floor(ms)));
    if (v >= this.sweepMs) return;
    this.sweepMs = v;
    this.loop.sweepEvery(v);
  }

  port(lid: number): number { return this.loop.port(lid); }
  /** Stop accepting; open connections stay and still report to the handler. */
  closeListener(lid: number): void { this.loop.closeListener(lid); }
  /** The handler gets no more events (after its connections have ended). */
  forget(lid: number): void { this.handlers[lid] = undefined; }

  /**
   * Start a connect attempt to an IP literal (several may race); its number (0..3, never reused for one
   * connection), or the code of an immediate failure: EINVAL (no IP literal), EADDRNOTAVAIL (localAddress),
   * ENETUNREACH..., ECONNABORTED (the id is gone), EISCONN (relaying already), EMFILE (four attempts made).
   * A localAddress of the other family is not used. Allowed before the head is complete too.
   */
  connect(id: number, address: string, port: number, o: ConnectOptions): number | string {
    return this.loop.connect(id, address, port, o.localAddress ?? null, o.timeoutMs, o.raceMs ?? 0, o.onConnect ?? null, o.rest ?? 0, o.quiet === true);
  }

  /** Give up one attempt (no event follows for it); the others go on. */
  cancel(id: number, attempt: number): void { this.loop.cancel(id, attempt); }
  /**
   * Reply (if any), FIN, then closed(..., 'ended') once the client's FIN came or 2 s after ours. What the client
   * sends meanwhile is read and dropped (no reset eats the reply, an uploading client is not blocked); an
   * upstream, if any, is closed at once.
   */
  end(id: number, reply?: Buffer): void { this.loop.end(id, reply ?? null); }
  /** Close every socket now; closed(..., 'ended') before this returns. */
  destroy(id: number): void { this.loop.destroy(id); }
  /** Close every head-mode connection of the listener that has not sent a byte (a drain). */
  drainIdle(lid: number): void { this.loop.drainIdle(lid); }
  /** [address, port] of the client, IPv4-mapped shown as IPv4 (also inside closed()). */
  peer(id: number): [string, number] | undefined { return this.loop.peer(id); }
  get active(): number { return this.loop.active(); }

  /** Close every connection of the listener now, whatever its state (each reports closed(), reason Shutdown). */
  destroyAll(lid: number): void { this.loop.destroyAll(lid); }

  /**
   * Hand the client's socket to Node (a request the fast path does not relay); no closed() follows. Not once relaying or ended.
   * `options`: stream options of the new socket (highWaterMark, as a net.Server's sockets may have).
   */
  adopt(id: number, options?: { highWaterMark?: number }): net.Socket | undefined {
    const fd = this.loop.adopt(id);
    // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
    return fd < 0 ? undefined : new net.Socket({ ...options, fd, readable: true, writable: true, allowHalfOpen: true } as net.SocketConstructorOpts);
  }

  /** Every listener closed, every connection closed (closed(..., 'shutdown') each), the loop ends; verbs are no-ops after. */
  close(): void {
    if (shared === this) shared = undefined;
    this.loop.close();
  }
}

let shared: FastPath | undefined;
/** The process's one fast-path loop (a new one after close()). */
export function fastPath(): FastPath {
  shared ??= new FastPath();
  return shared;
}
