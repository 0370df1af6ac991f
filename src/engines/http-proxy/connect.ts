/**
 * CONNECT tunnels: policy, one TCP connection to the allowed address, then
 * bytes piped both ways. pipe() gives backpressure (a slow reader pauses the
 * fast writer instead of buffering without bound); allowHalfOpen on both
 * sockets lets one direction finish while the other keeps flowing, which
 * protocols such as "send request, shut down writing, read reply" need.
 */
import net from 'node:net';
import { closingReply } from './http1.js';
import { denialText } from './policy.js';
import type { Address } from '../../dns/lookup.js';
import { route, type Route } from './route.js';
import type { TunnelHost } from './front.js';
import type { Runtime } from './runtime.js';
import { hostText } from '../../config/host.js';
import { parseAuthority } from './target.js';
import { downloadTo, TUNNEL_HWM } from './pump.js';
import { logEnd, type RequestLog } from './logline.js';

const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');

/**
 * Synchronous up to the connect for IP literals (route() answers them without
 * a promise): no microtask turn between the CONNECT head and the SYN.
 */
export function handleConnect(rt: Runtime, target: string, sock: net.Socket, head: Buffer, client: string, host: TunnelHost): void {
  const log: RequestLog = { start: performance.now(), client, method: 'CONNECT', target };
  const t = parseAuthority(target);
  if (!t) return refuse(rt, sock, log, 400, 'bad CONNECT target, expected host:port\n');
  log.target = `${hostText(t.host)}:${t.port}`;
  if (rt.connectPorts && !rt.connectPorts.has(t.port)) return refuse(rt, sock, log, 403, `denied: CONNECT to port ${t.port} is not allowed\n`, 'port');
  const r = route(rt, t);
  if (r instanceof Promise) {
    r.then((x) => routed(rt, x, sock, log, t.port, head, host)).catch((e: unknown) => {
      rt.logger.error({ err: e }, 'request failed');
      sock.destroy();
    });
  } else routed(rt, r, sock, log, t.port, head, host);
}

function routed(rt: Runtime, r: Route, sock: net.Socket, log: RequestLog, port: number, head: Buffer, host: TunnelHost): void {
  if (!r.ok) {
    log.rule = r.decision?.rule?.text;
    return refuse(rt, sock, log, r.status, r.status === 403 ? denialText(r.decision!) : `${r.reason}\n`, r.status === 403 ? 'deny' : 'error');
  }
  log.decision = 'allow';
  log.rule = r.decision.rule?.text ?? '*';
  if (sock.destroyed) return logEnd(rt, log, 499, 0, 0);
  new Tunnel(rt, sock, log, r.addresses, port, head, host).attempt(0);
}

/** Addresses after the first that are tried when a connect fails. */
export const MAX_ATTEMPTS = 3;

// Listeners shared by every tunnel (the tunnel is found through a symbol on
// the socket) instead of a set of closures per tunnel and per attempt.
const TUNNEL = Symbol('tunnel');
type Owned = net.Socket & { [TUNNEL]: Tunnel };
function onUpError(this: Owned, e: NodeJS.ErrnoException): void { this[TUNNEL].upError(this, e); }
function onUpConnect(this: Owned): void { this[TUNNEL].upConnected(this); }
function onUpClose(this: Owned): void { this[TUNNEL].upClosed(this); }
function onClientClose(this: Owned): void { this[TUNNEL].clientClosed(); }
function onClientData(this: Owned, d: Buffer): void { const t = this[TUNNEL]; if (t.up && !t.up.write(d)) this.pause(); }
function onClientDrain(this: Owned): void { this[TUNNEL].up?.resume(); }
function onClientEnd(this: Owned): void { this[TUNNEL].up?.end(); }
function onClientError(this: Owned): void { this[TUNNEL].up?.destroy(); }
function onUpErrorOpen(this: Owned): void { this[TUNNEL].c.destroy(); }
function onUpEnd(this: Owned): void { this[TUNNEL].c.end(); }
function onUpDrain(this: Owned): void { this[TUNNEL].c.resume(); }

/**
 * One tunnel: connect to addresses[i]; on failure (refused, unreachable,
 * timed out) try the next allowed address, as a browser would, up to
 * MAX_ATTEMPTS. Each attempt gets the connect timeout (swept with the client
 * connection's deadlines, front.ts). The client hears about the last failure.
 */
class Tunnel {
  /** The connected upstream socket. */
  up: net.Socket | undefined;
  private trying: net.Socket | undefined;
  private disarm: (() => void) | undefined;
  private i = 0;
  private closed = 0;
  private readBefore = 0;

  constructor(readonly rt: Runtime, readonly c: net.Socket, readonly log: RequestLog, readonly addrs: readonly Address[], readonly port: number,
    readonly head: Buffer, readonly host: TunnelHost) {
    (c as Owned)[TUNNEL] = this;
    // The client went away while we were connecting.
    c.once('close', onClientClose);
    host.onDeadline = () => this.failed(504, 'timed out');
  }

  attempt(i: number): void {
    const { rt, log, port } = this;
    this.i = i;
    const a = this.addrs[i]!;
    log.upstream = `${a.family === 6 ? `[${a.address}]` : a.address}:${port}`;
    const down = downloadTo(this.c);
    // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
    const up = net.connect({ host: a.address, port, family: a.family, localAddress: rt.localAddress, noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HWM, onread: down.onread } as net.NetConnectOpts);
    (up as Owned)[TUNNEL] = this;
    this.trying = up;
    this.disarm = down.disarm;
    this.host.deadline = performance.now() + rt.limits.connectTimeoutMs;
    up.once('error', onUpError);
    up.once('close', onUpClose);
    up.once('connect', onUpConnect);
  }

  upError(up: net.Socket, e: NodeJS.ErrnoException): void {
    if (up === this.trying) this.failed(502, e.code ?? e.message);
  }

  upClosed(up: net.Socket): void {
    if (up !== this.up) return;
    // The read buffer waiting for this socket goes back.
    this.disarm?.();
    this.c.destroySoon();
    this.done();
  }

  clientClosed(): void {
    if (this.trying) { this.host.deadline = 0; this.trying.destroy(); this.trying = undefined; return; }
    if (this.up) { this.up.destroySoon(); this.done(); }
  }

  private failed(status: number, why: string): void {
    const up = this.trying;
    if (!up) return;
    this.trying = undefined;
    this.host.deadline = 0;
    up.destroy();
    this.disarm?.();
    const { rt, c, log } = this;
    if (rt.debug) rt.logger.debug({ client: log.client, target: log.target, upstream: log.upstream, error: why }, 'connect failed');
    if (this.i + 1 < Math.min(this.addrs.length, MAX_ATTEMPTS) && !c.destroyed) return this.attempt(this.i + 1);
    refuse(rt, c, log, status, status === 504 ? `connect to ${log.upstream} timed out\n` : `connect to ${log.upstream} failed: ${why}\n`, 'error');
  }

  upConnected(up: net.Socket): void {
    this.host.deadline = 0;
    this.trying = undefined;
    up.off('error', onUpError);
    const c = this.c;
    if (c.destroyed) { up.destroy(); return logEnd(this.rt, this.log, 499, 0, 0); }
    this.up = up;
    c.write(ESTABLISHED);
    if (this.head.length > 0) up.write(this.head);
    // Tunnel payload only: the client socket had already read the CONNECT
    // request; what followed it (`head`, and anything buffered since) is payload.
    this.readBefore = c.bytesRead - this.head.length - c.readableLength;
    // c -> up with backpressure (what pipe() does, with four listeners
    // instead of nine); up -> c is written by the pump (pump.ts), whose
    // backpressure pauses reading until the client drains. With allowHalfOpen
    // on both, a FIN one way becomes end() the other way and the reverse
    // direction keeps flowing. Idle: swept by the front (front.ts).
    c.on('data', onClientData);
    c.on('drain', onClientDrain);
    c.once('end', onClientEnd);
    up.on('drain', onUpDrain);
    up.once('end', onUpEnd);
    // An error on one side ends the other: no tunnel half-alive forever.
    c.on('error', onClientError);
    up.on('error', onUpErrorOpen);
    c.resume();
  }

  /** When one side is closed, the other finishes writing what it has, then closes. */
  private done(): void {
    if (++this.closed === 2) {
      const c = this.c;
      logEnd(this.rt, this.log, 200, c.bytesRead - this.readBefore, c.bytesWritten - ESTABLISHED.length);
    }
  }
}

function refuse(rt: Runtime, c: net.Socket, log: RequestLog, status: number, body: string, decision = 'error'): void {
  if (log.status !== undefined) return;
  log.decision ??= decision;
  if (!c.destroyed && c.writable) {
    c.end(closingReply(status, body));
  }
  c.destroySoon();
  logEnd(rt, log, status, 0, 0);
}
