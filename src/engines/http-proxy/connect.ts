/**
 * CONNECT tunnels on net.Socket (EGRESS_FASTPATH=0, or a CONNECT that follows
 * a plain request on a kept-alive connection): the decision is tunnel.ts's;
 * here one TCP connection per attempt, then bytes relayed both ways with
 * backpressure (a slow reader pauses the fast writer instead of buffering
 * without bound); allowHalfOpen on both sockets lets one direction finish
 * while the other keeps flowing, which protocols such as "send request, shut
 * down writing, read reply" need.
 */
import net from 'node:net';
import type { Address } from '../../dns/lookup.js';
import type { TunnelHost } from './front.js';
import type { Runtime } from './runtime.js';
import { downloadTo, TUNNEL_HWM } from './pump.js';
import { ConnectTunnel, ESTABLISHED } from './tunnel.js';

/** A CONNECT read by front.ts on a net.Socket: decided by tunnel.ts, relayed here. */
export function handleConnect(rt: Runtime, target: string, sock: net.Socket, head: Buffer, client: string, host: TunnelHost): void {
  new Tunnel(rt, sock, head, client, host, target).start();
}

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
 * One tunnel on net.Socket: each attempt gets the connect timeout (swept with
 * the client connection's deadlines, front.ts).
 */
class Tunnel extends ConnectTunnel {
  /** The connected upstream socket. */
  up: net.Socket | undefined;
  private trying: net.Socket | undefined;
  private disarm: (() => void) | undefined;
  private closed = 0;
  private readBefore = 0;

  constructor(rt: Runtime, readonly c: net.Socket, readonly head: Buffer, client: string, readonly host: TunnelHost, target: string) {
    super(rt, client, target);
    (c as Owned)[TUNNEL] = this;
    // The client went away while we were connecting.
    c.once('close', onClientClose);
    host.onDeadline = () => this.attemptFailed(504, 'timed out');
  }

  protected gone(): boolean { return this.c.destroyed; }

  protected abort(): void { this.c.destroy(); }

  protected reply(text: string): void {
    const c = this.c;
    if (!c.destroyed && c.writable) c.end(text);
    c.destroySoon();
  }

  protected dial(a: Address, port: number): void {
    const rt = this.rt;
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
    if (up === this.trying) this.attemptFailed(502, e.code ?? e.message);
  }

  upClosed(up: net.Socket): void {
    if (up !== this.up) return;
    // The read buffer waiting for this socket goes back.
    this.disarm?.();
    this.c.destroySoon();
    this.done();
  }

  clientClosed(): void {
    if (this.trying) { this.host.deadline = 0; this.trying.destroy(); this.trying = undefined; this.left(); return; }
    if (this.up) { this.up.destroySoon(); this.done(); }
  }

  /** The attempt in flight failed or timed out: its socket goes, tunnel.ts decides what next. */
  private attemptFailed(status: 502 | 504, why: string): void {
    const up = this.trying;
    if (!up) return;
    this.trying = undefined;
    this.host.deadline = 0;
    up.destroy();
    this.disarm?.();
    this.failed(status, why);
  }

  upConnected(up: net.Socket): void {
    this.host.deadline = 0;
    this.trying = undefined;
    up.off('error', onUpError);
    const c = this.c;
    if (c.destroyed) { up.destroy(); return this.left(); }
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
      this.ended(c.bytesRead - this.readBefore, c.bytesWritten - ESTABLISHED.length);
    }
  }
}
