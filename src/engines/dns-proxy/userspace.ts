/**
 * The user-space data path on Node sockets (EGRESS_FASTPATH=0, or the native
 * fast path not built): a net.Server per destination line that pipes each
 * client to one of the target's addresses. The decisions (which address,
 * retries, races, logs, counts) are dial.ts's, shared with fast.ts.
 */
import net from 'node:net';
import { unmapText } from '../../config/ip.js';
import type { Logger } from '../../observe/log.js';
import type { DnsProxyOptions } from '../../config/dns-proxy-options.js';
import { Progress, Sweeper, sweepEvery, type Swept } from '../sweep.js';
import { Dial, IDLE, ListenerBase, RACE_AFTER_MS, clientError, remoteError, type Attempt, type Listener } from './dial.js';

export type { Listener, UserspaceStats } from './dial.js';

// Stream buffers: at the 16 KiB default, every 64 KiB socket read overflows
// the writer and pauses the reader. Allocated as data arrives, so an idle
// connection does not pay for them.
const HWM = 256 << 10;
/** Connects in flight are checked this often (the race after 1 s starts within this much of it). */
const SWEEP_CONNECTING_MS = 100;

export class UserspaceListener extends ListenerBase {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  /** The idle sweep: one interval for every established connection of this listener. */
  readonly idle: Sweeper<Relay>;
  /** Connects in flight: their timeout and the race after RACE_AFTER_MS, checked every SWEEP_CONNECTING_MS. */
  readonly connecting = new Sweeper<Relay>(SWEEP_CONNECTING_MS);

  constructor(l: Listener, o: DnsProxyOptions, log: Logger) {
    super(l, o, log);
    this.idle = new Sweeper<Relay>(sweepEvery(o.idleTimeoutMs));
  }

  get listening(): boolean { return this.server !== undefined; }

  protected async bind(host: string): Promise<void> {
    const server = this.server ??= net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: HWM }, (c) => this.accept(c));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.target.port, host, ipv6Only: false }, () => { server.off('error', reject); resolve(); });
    });
    server.on('error', (e) => this.logger.error({ port: this.target.port, err: e.message }, 'listener error'));
  }

  protected unlisten(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    return new Promise((r) => { if (s) s.close(() => r()); else r(); });
  }

  protected cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  private accept(client: net.Socket): void {
    if (!this.admit()) return void client.destroy();
    this.sockets.add(client);
    new Relay(this, client).attempt();
  }

  /** A client connection closed. */
  closed(r: Relay): void {
    this.sockets.delete(r.client);
    this.connecting.delete(r);
    this.idle.delete(r);
  }
}

// Listeners shared by every connection (its Relay is found through a symbol
// on the socket) instead of a set of closures per connection and attempt.
const RELAY = Symbol('relay');
type Owned = net.Socket & { [RELAY]: Relay };
function onClientError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].finish(clientError(e.code ?? e.message)); }
function onClientClose(this: Owned): void { this[RELAY].clientClosed(); }
function onUpError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].upFailed(this, e); }
function onUpConnect(this: Owned): void { this[RELAY].upConnected(this); }
function onRemoteError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].finish(remoteError(e.code ?? e.message)); }
// What stream.pipe() does for two sockets, with three listeners instead of
// pipe's nine: measured (bench/churn.mjs) as part of the per-connection cost.
// The peer of a socket: the upstream for the client, the client for the upstream.
const peer = (s: Owned): net.Socket | undefined => { const r = s[RELAY]; return s === r.client ? r.upstream : r.client; };
function onData(this: Owned, d: Buffer): void { if (!peer(this)!.write(d)) this.pause(); }
function onDrain(this: Owned): void { peer(this)?.resume(); }
function onEnd(this: Owned): void { peer(this)?.end(); }

interface SocketAttempt extends Attempt { readonly sock: net.Socket; readonly deadline: number; raceAt: number }

/** One client connection: its connect attempts (dial.ts), then the relay both ways. */
class Relay extends Dial<SocketAttempt, UserspaceListener> implements Swept {
  upstream: net.Socket | undefined;
  private readonly progress = new Progress();

  constructor(ls: UserspaceListener, readonly client: net.Socket) {
    super(ls);
    (client as Owned)[RELAY] = this;
    this.begin();
    client.on('error', onClientError);
    client.once('close', onClientClose);
  }

  protected peerText(): string { return `${unmapText(this.client.remoteAddress ?? '?')}:${this.client.remotePort}`; }
  protected gone(): boolean { return this.client.destroyed; }
  protected abandon(a: SocketAttempt): void { a.sock.destroy(); }
  protected override settled(): void { this.ls.connecting.delete(this); }

  protected destroy(): void {
    this.client.destroy();
    this.upstream?.destroy();
    if (this.pending) for (const a of this.pending) a.sock.destroy();
  }

  clientClosed(): void {
    const { ls, client, upstream } = this;
    ls.closed(this);
    if (this.pending) for (const a of this.pending) a.sock.destroy();
    // A client gone before the remote finished: nobody to deliver to.
    if (upstream && !upstream.writableFinished) upstream.destroy();
    ls.ended(this, client.bytesRead, client.bytesWritten);
  }

  protected open(addr: string, port: number): SocketAttempt {
    const o = this.ls.options;
    // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
    const up = net.connect({ host: addr, port, allowHalfOpen: true, noDelay: true, localAddress: o.bindSource, highWaterMark: HWM } as net.NetConnectOpts);
    (up as Owned)[RELAY] = this;
    const now = performance.now();
    // An unanswered SYN (black-holed address) would hold the client for the
    // whole connect timeout: past the first SYN retransmission time, race the
    // next address beside it and keep whichever answers first.
    const a = { sock: up, addr, deadline: now + o.connectTimeoutMs, raceAt: now + Math.min(RACE_AFTER_MS, o.connectTimeoutMs) };
    this.ls.connecting.add(this);
    up.once('error', onUpError);
    up.once('connect', onUpConnect);
    return a;
  }

  private attemptOf(up: net.Socket): SocketAttempt | undefined {
    if (this.pending) for (const a of this.pending) if (a.sock === up) return a;
    return undefined;
  }

  upFailed(up: net.Socket, e: NodeJS.ErrnoException): void {
    const a = this.attemptOf(up);
    if (a) this.failed(a, e.code ?? e.message);
  }

  upConnected(up: net.Socket): void {
    const a = this.attemptOf(up);
    if (a) this.connected(a);
  }

  /** Connects in flight: timeouts and races, swept (no timers per connection); then the idle limit. */
  sweep(now: number): void {
    if (this.upstream) {
      if (this.progress.stalled(this.client.bytesRead + this.client.bytesWritten, now, this.ls.options.idleTimeoutMs)) this.finish(IDLE);
      return;
    }
    for (const a of [...(this.pending ?? [])]) {
      if (a.deadline <= now) a.sock.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      else if (a.raceAt !== 0 && a.raceAt <= now) { a.raceAt = 0; this.attempt(); }
    }
  }

  protected relay(a: SocketAttempt): void {
    const up = a.sock, client = this.client;
    up.off('error', onUpError);
    this.upstream = up;
    up.on('error', onRemoteError);
    // A socket's byte counts move with its reads and its writes: everything
    // relayed either way passes through the client socket, so its counts
    // (swept, not a timer) see all traffic.
    if (this.ls.options.idleTimeoutMs > 0) this.ls.idle.add(this);
    // Backpressure both ways; with allowHalfOpen, a FIN from one side becomes
    // end() on the other and the reverse direction keeps flowing. Each socket
    // closes itself once both its directions are done (autoDestroy), after
    // flushing: destroying on 'end' could drop the last buffered bytes.
    for (const s of [client, up]) {
      s.on('data', onData);
      s.on('drain', onDrain);
      s.once('end', onEnd);
    }
    client.resume();
  }
}
