/**
 * The user-space data path: a TCP listener per destination line that pipes
 * each client to one of the target's addresses. Per connection it can retry
 * on the next address and log what happened, which the kernel path cannot.
 */
import net from 'node:net';
import { unmapText } from '../../config/ip.js';
import type { Logger } from '../../observe/log.js';
import type { DnsProxyOptions } from '../../config/dns-proxy-options.js';
import type { AddressPool } from './pool.js';
import { Progress, Sweeper, sweepEvery, type Swept } from '../sweep.js';

export interface Listener {
  readonly port: number;
  readonly remotePort: number;
  /** Name or IP as configured, for logs. */
  readonly target: string;
  readonly pool: AddressPool;
}

// A client gets at most this many connect attempts (each on another address).
const MAX_TRIES = 3;
// Linux re-sends an unanswered SYN after 1 s: an address silent that long is
// probably black-holed, so the next one is tried beside it from then on.
const RACE_AFTER_MS = 1000;
// Stream buffers: at the 16 KiB default, every 64 KiB socket read overflows
// the writer and pauses the reader. Allocated as data arrives, so an idle
// connection does not pay for them.
const HWM = 256 << 10;

/** Plain numbers, read by metrics at scrape time (lifecycle/engine.ts ListenerStats). */
export interface UserspaceStats {
  accepted: number;
  refused: { 'no-address': number; 'connect-failed': number };
  bytesIn: number;
  bytesOut: number;
}

export class UserspaceListener {
  private server: net.Server | undefined;
  private readonly open = new Set<net.Socket>();
  private drained: (() => void) | undefined;
  readonly stats: UserspaceStats = { accepted: 0, refused: { 'no-address': 0, 'connect-failed': 0 }, bytesIn: 0, bytesOut: 0 };

  /** The idle sweep: one interval for every established connection of this listener. */
  readonly idle: Sweeper<Relay>;
  /** Connects in flight: their timeout and the race after RACE_AFTER_MS, checked every SWEEP_CONNECTING_MS. */
  readonly connecting = new Sweeper<Relay>(SWEEP_CONNECTING_MS);

  constructor(private l: Listener, private readonly o: DnsProxyOptions, private readonly log: Logger) {
    this.idle = new Sweeper<Relay>(sweepEvery(o.idleTimeoutMs));
  }

  get active(): number { return this.open.size; }

  /** A reload changed this port's target: new connections go to the new one, open ones stay where they are. */
  retarget(l: Listener): void { this.l = l; }

  /** Stop accepting (the port refuses from now on); resolves once every open connection has ended. */
  async drain(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    s?.close();
    if (this.open.size > 0) await new Promise<void>((r) => { this.drained = r; });
  }

  get listening(): boolean { return this.server !== undefined; }

  /**
   * Listens only once the target has an address: until then the port
   * refuses connections (a clear RST) rather than accepting and dropping.
   */
  async listen(): Promise<void> {
    if (this.server) return;
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: HWM }, (c) => this.accept(c));
    server.maxConnections = this.o.maxConnections;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // '::' accepts IPv4 too (dual-stack), as haproxy's bind :port did.
      server.listen({ port: this.l.port, host: '::', ipv6Only: false }, () => { server.off('error', reject); resolve(); });
    }).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') throw e;
      // No IPv6 in this namespace: IPv4 only.
      await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(this.l.port, '0.0.0.0', resolve); });
    });
    server.on('error', (e) => this.log.error({ port: this.l.port, err: e.message }, 'listener error'));
  }

  async close(): Promise<void> {
    for (const s of this.open) s.destroy();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise((r) => s.close(r));
  }

  private accept(client: net.Socket): void {
    this.open.add(client);
    this.stats.accepted++;
    new Relay(this, client).attempt();
  }


  /** A client connection closed (its counts, the drain). */
  closed(r: Relay): void {
    const client = r.client;
    this.open.delete(client);
    this.connecting.delete(r);
    this.idle.delete(r);
    this.stats.bytesIn += client.bytesRead;
    this.stats.bytesOut += client.bytesWritten;
    if (r.reason === 'no address') this.stats.refused['no-address']++;
    else if (r.reason === 'all connect attempts failed') this.stats.refused['connect-failed']++;
    if (this.open.size === 0) this.drained?.();
  }

  get target(): Listener { return this.l; }
  get options(): DnsProxyOptions { return this.o; }
  get logger(): Logger { return this.log; }
}

/** Connects in flight are checked this often (the race after 1 s starts within this much of it). */
const SWEEP_CONNECTING_MS = 100;
const NONE: ReadonlySet<string> = new Set();

// Listeners shared by every connection (its Relay is found through a symbol
// on the socket) instead of a set of closures per connection and attempt.
const RELAY = Symbol('relay');
type Owned = net.Socket & { [RELAY]: Relay };
function onClientError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].finish(`client error: ${e.code ?? e.message}`); }
function onClientClose(this: Owned): void { this[RELAY].clientClosed(); }
function onUpError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].connectFailed(this, e); }
function onUpConnect(this: Owned): void { this[RELAY].connected(this); }
function onRemoteError(this: Owned, e: NodeJS.ErrnoException): void { this[RELAY].finish(`remote error: ${e.code ?? e.message}`); }
// What stream.pipe() does for two sockets, with three listeners instead of
// pipe's nine: measured (bench/churn.mjs) as part of the per-connection cost.
// The peer of a socket: the upstream for the client, the client for the upstream.
const peer = (s: Owned): net.Socket | undefined => { const r = s[RELAY]; return s === r.client ? r.upstream : r.client; };
function onData(this: Owned, d: Buffer): void { if (!peer(this)!.write(d)) this.pause(); }
function onDrain(this: Owned): void { peer(this)?.resume(); }
function onEnd(this: Owned): void { peer(this)?.end(); }

interface Attempt { readonly sock: net.Socket; readonly addr: string; readonly deadline: number; raceAt: number }

/** One client connection: its connect attempts, then the relay both ways. */
class Relay implements Swept {
  upstream: net.Socket | undefined;
  reason: string | undefined;
  private chosen: string | undefined;
  private first: string | undefined;
  private tried: Set<string> | undefined;
  /** Connects in flight (none once one has answered: an idle connection holds no array). */
  private pending: Attempt[] | undefined;
  private readonly progress = new Progress();
  // getpeername is a syscall, and unreadable once the socket is closed: only
  // taken up front when every connection is logged.
  private readonly who: string;
  private readonly start: number;

  constructor(private readonly ls: UserspaceListener, readonly client: net.Socket) {
    (client as Owned)[RELAY] = this;
    const debug = ls.options.debug;
    this.who = debug ? this.peerText() : '';
    this.start = debug ? Date.now() : 0;
    client.on('error', onClientError);
    client.once('close', onClientClose);
  }

  private peerText(): string { return `${unmapText(this.client.remoteAddress ?? '?')}:${this.client.remotePort}`; }
  private triedCount(): number { return this.tried ? this.tried.size : this.first === undefined ? 0 : 1; }

  finish(why: string): void {
    this.reason ??= why;
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
    if (!ls.options.debug) return;
    const l = ls.target;
    ls.logger.debug({
      client: this.who, port: l.port, name: l.target, address: this.chosen ?? null,
      bytesFromClient: client.bytesRead, bytesToClient: client.bytesWritten,
      durationMs: Date.now() - this.start, end: this.reason ?? 'closed',
    }, 'connection');
  }

  attempt(): void {
    if (this.upstream || this.client.destroyed) return;
    const { ls } = this;
    const l = ls.target, o = ls.options;
    const n = this.triedCount();
    const addr = n < MAX_TRIES ? l.pool.pick(this.tried ?? (this.first === undefined ? NONE : new Set([this.first]))) : undefined;
    if (addr === undefined) {
      // Others still connecting: one of them may yet answer.
      if (this.pending) return;
      if (n > 0) ls.logger.warn({ client: this.who || this.peerText(), port: l.port, name: l.target, tried: this.triedList() }, 'no address accepted the connection');
      return this.finish(n ? 'all connect attempts failed' : 'no address');
    }
    if (this.first === undefined) this.first = addr;
    else (this.tried ??= new Set([this.first])).add(addr);
    // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
    const up = net.connect({ host: addr, port: l.remotePort, allowHalfOpen: true, noDelay: true, localAddress: o.bindSource, highWaterMark: HWM } as net.NetConnectOpts);
    (up as Owned)[RELAY] = this;
    const now = performance.now();
    // An unanswered SYN (black-holed address) would hold the client for the
    // whole connect timeout: past the first SYN retransmission time, race the
    // next address beside it and keep whichever answers first.
    (this.pending ??= []).push({ sock: up, addr, deadline: now + o.connectTimeoutMs, raceAt: now + Math.min(RACE_AFTER_MS, o.connectTimeoutMs) });
    ls.connecting.add(this);
    up.once('error', onUpError);
    up.once('connect', onUpConnect);
  }

  private triedList(): string[] { return this.tried ? [...this.tried] : this.first === undefined ? [] : [this.first]; }

  private drop(up: net.Socket): Attempt | undefined {
    const p = this.pending;
    const i = p ? p.findIndex((a) => a.sock === up) : -1;
    if (i < 0) return undefined;
    const a = p![i]!;
    p!.splice(i, 1);
    if (p!.length === 0) { this.pending = undefined; this.ls.connecting.delete(this); }
    return a;
  }

  connectFailed(up: net.Socket, e: NodeJS.ErrnoException): void {
    const a = this.drop(up);
    if (!a) return;
    const l = this.ls.target;
    l.pool.markDown(a.addr);
    this.ls.logger.warn({ port: l.port, name: l.target, address: a.addr, err: e.code ?? e.message }, 'connect failed, address marked down');
    this.attempt();
  }

  /** Connects in flight: timeouts and races, swept (no timers per connection). */
  sweep(now: number): void {
    if (this.upstream) {
      if (this.progress.stalled(this.client.bytesRead + this.client.bytesWritten, now, this.ls.options.idleTimeoutMs)) this.finish('idle timeout');
      return;
    }
    for (const a of [...(this.pending ?? [])]) {
      if (a.deadline <= now) a.sock.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
      else if (a.raceAt !== 0 && a.raceAt <= now) { a.raceAt = 0; this.attempt(); }
    }
  }

  connected(up: net.Socket): void {
    const a = this.drop(up);
    if (!a) return;
    up.off('error', onUpError);
    const l = this.ls.target;
    l.pool.markUp(a.addr);
    // The racers that lost had not answered for at least RACE_AFTER_MS:
    // down, so the next clients skip them instead of waiting again.
    for (const r of this.pending ?? []) {
      r.sock.destroy();
      l.pool.markDown(r.addr);
      this.ls.logger.warn({ port: l.port, name: l.target, address: r.addr, err: 'ETIMEDOUT' }, 'connect unanswered while another address answered, address marked down');
    }
    this.pending = undefined;
    this.ls.connecting.delete(this);
    const client = this.client;
    if (client.destroyed) return void up.destroy();
    this.chosen = a.addr;
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
