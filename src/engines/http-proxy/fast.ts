/**
 * The listener on the native fast path (engines/fastpath, EGRESS_FASTPATH):
 * C accepts and reads the first request head. A CONNECT is decided here (by
 * tunnel.ts, as on net.Socket) and connected and relayed in C: no net.Socket,
 * no stream, no timer of its own. Every other request is handed to front.ts
 * as a net.Socket (adopt()), the bytes C read fed as its first data, so plain
 * HTTP, keep-alive, bodies and later CONNECTs on that connection behave as on
 * the net.Socket listener; a kept-alive connection pays one adopt(), once.
 *
 * The same admission (gate.ts) acts at accept, and the same parser at the
 * head; the access lines, counters and replies are those of the net.Socket
 * path (one function each, shared).
 */
import { lookup } from 'node:dns/promises';
import { getSystemErrorMap } from 'node:util';
import { ipFamily } from '../../config/ip.js';
import type { Address } from '../../dns/lookup.js';
import { fastPath, type ConnectOptions, type FastHandler, type FastPath } from '../fastpath/index.js';
import { sweepEvery } from '../sweep.js';
import { headError, type Fronts } from './front.js';
import type { Acceptor, Gate } from './gate.js';
import { parseRequestHead } from './http1.js';
import { TUNNEL_HWM } from './pump.js';
import type { Runtime } from './runtime.js';
import { ConnectTunnel, ESTABLISHED } from './tunnel.js';

/** Bytes read past the header limit (leading blank lines, which the parser skips, and enough to exceed it). */
const HEAD_SLACK = 4096;
/** A connection accepted and counted, not (yet) a tunnel. */
const ACCEPTED = 0;

export async function listenFast(rt: Runtime, gate: Gate, fronts: Fronts, host: string, port: number): Promise<Acceptor> {
  const fp = fastPath();
  const L = rt.limits;
  // As net.Server.listen does with a name: its first address.
  const ip = ipFamily(host) !== 0 ? host : (await lookup(host)).address;
  const l = new FastListener(rt, fp, gate, fronts);
  try {
    // C stops reading at maxHead: past the limit by a little, so the parser sees a head that is too large and answers 431.
    l.lid = fp.listen(l, { host: ip, port, mode: 'head', backlog: 1024, idleMs: L.idleTimeoutMs, headMs: L.headersTimeoutMs, maxHead: L.maxHeaderBytes + HEAD_SLACK });
  } catch (e) {
    throw listenError(e as NodeJS.ErrnoException, ip, port);
  }
  fp.sweepEvery(sweepEvery(L.headersTimeoutMs, L.idleTimeoutMs, L.connectTimeoutMs));
  return l;
}

class FastListener implements FastHandler, Acceptor {
  readonly path = 'fastpath';
  lid = -1;
  /** Accepted connections still in C: ACCEPTED, or their tunnel. */
  private readonly conns = new Map<number, FastTunnel | typeof ACCEPTED>();
  /** Reused for every connect (copied by the addon): only `rest` changes. */
  readonly connectOptions: ConnectOptions & { rest: number };

  constructor(readonly rt: Runtime, readonly fp: FastPath, private readonly gate: Gate, private readonly fronts: Fronts) {
    this.connectOptions = { timeoutMs: rt.limits.connectTimeoutMs, localAddress: rt.localAddress, onConnect: ESTABLISHED, rest: 0 };
  }

  get port(): number { return this.fp.port(this.lid); }

  stop(): void {
    this.fp.closeListener(this.lid);
    this.fp.drainIdle(this.lid);
  }

  destroy(): void {
    for (const id of [...this.conns.keys()]) this.fp.destroy(id);
  }

  /** Every connection has ended: no more events for this listener. */
  forget(): void { this.fp.forget(this.lid); }

  accept(id: number): void {
    const g = this.gate;
    const refusal = g.admit(g.clients ? this.client(id) : '');
    if (refusal) return this.fp.end(id, refusal);
    this.conns.set(id, ACCEPTED);
  }

  head(id: number, bytes: Buffer): boolean {
    const rt = this.rt;
    const r = parseRequestHead(bytes, 0, rt.limits.maxHeaderBytes);
    if (r.kind === 'incomplete') return true;
    const client = this.client(id);
    if (r.kind === 'error') {
      this.fp.end(id, Buffer.from(headError(rt, client, r.status, r.reason)));
      return false;
    }
    if (r.head.method !== 'CONNECT') {
      const sock = this.fp.adopt(id, { highWaterMark: TUNNEL_HWM });
      if (!sock) { this.fp.destroy(id); return false; }
      // Node's now: counted from here by the front's close, the head's bytes here.
      this.conns.delete(id);
      rt.stats.bytesIn += bytes.length;
      sock.on('error', ignore);
      this.fronts.serve(sock, client, bytes, r);
      return false;
    }
    const t = new FastTunnel(this, id, client, r.head.target, r.end);
    this.conns.set(id, t);
    try {
      t.start();
    } catch (e) {
      rt.logger.error({ err: e }, 'request failed');
      this.fp.destroy(id);
    }
    return false;
  }

  headTimeout(id: number): void {
    this.fp.end(id, Buffer.from(headError(this.rt, this.client(id), 408, 'request headers not received in time')));
  }

  connectFailed(id: number, _attempt: number, code: string): void {
    const t = this.conns.get(id);
    if (t) t.connectFailed(code);
  }

  connected(id: number): void {
    const t = this.conns.get(id);
    if (t) t.up = true;
  }

  closed(id: number, fromClient: number, toClient: number): void {
    const t = this.conns.get(id);
    // Refused at accept: neither counted nor served.
    if (t === undefined) return;
    this.conns.delete(id);
    this.gate.closed(fromClient, toClient);
    if (t !== ACCEPTED) t.closed(fromClient, toClient);
  }

  private client(id: number): string {
    return this.fp.peer(id)?.[0] ?? '?';
  }
}

/** A CONNECT on the fast path: decided by tunnel.ts, connected and relayed in C. */
class FastTunnel extends ConnectTunnel {
  /** Connected: C is relaying. */
  up = false;
  private isGone = false;

  constructor(private readonly l: FastListener, readonly id: number, client: string, target: string, private readonly rest: number) {
    super(l.rt, client, target);
  }

  protected gone(): boolean { return this.isGone; }

  protected dial(a: Address, port: number): void {
    const o = this.l.connectOptions;
    o.rest = this.rest;
    const r = this.l.fp.connect(this.id, a.address, port, o);
    if (typeof r === 'string') this.failed(502, r);
  }

  /** C's own connect deadline reports ETIMEDOUT. */
  connectFailed(code: string): void {
    if (code === 'ETIMEDOUT') this.failed(504, 'timed out');
    else this.failed(502, code);
  }

  protected reply(text: string): void { this.l.fp.end(this.id, Buffer.from(text)); }

  protected abort(): void { this.l.fp.destroy(this.id); }

  closed(fromClient: number, toClient: number): void {
    this.isGone = true;
    // Tunnel payload only: not the CONNECT head, not the 200.
    if (this.up) this.ended(fromClient - this.rest, toClient - ESTABLISHED.length);
    else this.left();
  }
}

function ignore(): void {}

/** The error net.Server.listen would have thrown: `listen EADDRINUSE: address already in use 0.0.0.0:8080`. */
function listenError(e: NodeJS.ErrnoException, host: string, port: number): Error {
  if (!e.code) return e;
  const known = [...getSystemErrorMap().values()].find(([name]) => name === e.code);
  const err: NodeJS.ErrnoException = new Error(`listen ${e.code}: ${known ? known[1] : e.message} ${host}:${port}`);
  err.code = e.code;
  err.syscall = 'listen';
  return err;
}
