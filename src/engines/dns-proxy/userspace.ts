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

  constructor(private l: Listener, private readonly o: DnsProxyOptions, private readonly log: Logger) {}

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
    const start = Date.now();
    const tried = new Set<string>();
    // getpeername is a syscall, and unreadable once the socket is closed: only
    // taken up front when every connection is logged.
    const peer = () => `${unmapText(client.remoteAddress ?? '?')}:${client.remotePort}`;
    const who = this.o.debug ? peer() : '';
    let chosen: string | undefined;
    let upstream: net.Socket | undefined;
    let reason: string | undefined;
    // Connects in flight and the address each one goes to.
    const pending = new Map<net.Socket, string>();
    this.open.add(client);
    this.stats.accepted++;
    client.on('error', (e) => finish(`client error: ${(e as NodeJS.ErrnoException).code ?? e.message}`));

    const finish = (why: string) => {
      reason ??= why;
      client.destroy();
      upstream?.destroy();
      for (const s of pending.keys()) s.destroy();
    };
    client.once('close', () => {
      this.open.delete(client);
      this.stats.bytesIn += client.bytesRead;
      this.stats.bytesOut += client.bytesWritten;
      if (reason === 'no address') this.stats.refused['no-address']++;
      else if (reason === 'all connect attempts failed') this.stats.refused['connect-failed']++;
      if (this.open.size === 0) this.drained?.();
      for (const s of pending.keys()) s.destroy();
      // A client gone before the remote finished: nobody to deliver to.
      if (upstream && !upstream.writableFinished) upstream.destroy();
      if (!this.o.debug) return;
      this.log.debug({
        client: who, port: this.l.port, name: this.l.target, address: chosen ?? null,
        bytesFromClient: client.bytesRead, bytesToClient: client.bytesWritten,
        durationMs: Date.now() - start, end: reason ?? 'closed',
      }, 'connection');
    });

    const attempt = () => {
      if (upstream || client.destroyed) return;
      const addr = tried.size < MAX_TRIES ? this.l.pool.pick(tried) : undefined;
      if (addr === undefined) {
        // Others still connecting: one of them may yet answer.
        if (pending.size > 0) return;
        if (tried.size > 0) this.log.warn({ client: who || peer(), port: this.l.port, name: this.l.target, tried: [...tried] }, 'no address accepted the connection');
        return finish(tried.size ? 'all connect attempts failed' : 'no address');
      }
      tried.add(addr);
      // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
      const up = net.connect({ host: addr, port: this.l.remotePort, allowHalfOpen: true, noDelay: true, localAddress: this.o.bindSource, highWaterMark: HWM } as net.NetConnectOpts);
      pending.set(up, addr);
      const timer = setTimeout(() => up.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), this.o.connectTimeoutMs);
      // An unanswered SYN (black-holed address) would hold the client for the
      // whole connect timeout: past the first SYN retransmission time, race the
      // next address beside it and keep whichever answers first.
      const race = setTimeout(attempt, Math.min(RACE_AFTER_MS, this.o.connectTimeoutMs));
      const failed = (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        clearTimeout(race);
        pending.delete(up);
        this.l.pool.markDown(addr);
        this.log.warn({ port: this.l.port, name: this.l.target, address: addr, err: e.code ?? e.message }, 'connect failed, address marked down');
        attempt();
      };
      up.once('error', failed);
      up.once('connect', () => {
        clearTimeout(timer);
        clearTimeout(race);
        pending.delete(up);
        up.off('error', failed);
        this.l.pool.markUp(addr);
        // The racers that lost had not answered for at least RACE_AFTER_MS:
        // down, so the next clients skip them instead of waiting again.
        for (const [s, a] of pending) {
          s.destroy();
          this.l.pool.markDown(a);
          this.log.warn({ port: this.l.port, name: this.l.target, address: a, err: 'ETIMEDOUT' }, 'connect unanswered while another address answered, address marked down');
        }
        pending.clear();
        if (client.destroyed) return up.destroy();
        chosen = addr;
        upstream = up;
        this.pipe(client, up, finish);
      });
    };
    attempt();
  }

  private pipe(client: net.Socket, up: net.Socket, finish: (why: string) => void): void {
    up.on('error', (e: NodeJS.ErrnoException) => finish(`remote error: ${e.code ?? e.message}`));
    if (this.o.idleTimeoutMs > 0) {
      // A socket's timeout is refreshed by its reads and its writes: everything
      // relayed either way passes through the client socket, so one timer
      // (not one per socket) sees all traffic.
      client.setTimeout(this.o.idleTimeoutMs, () => finish('idle timeout'));
    }
    // Backpressure both ways; with allowHalfOpen, a FIN from one side becomes
    // end() on the other and the reverse direction keeps flowing. Each socket
    // closes itself once both its directions are done (autoDestroy), after
    // flushing: destroying on 'end' could drop the last buffered bytes.
    relay(client, up);
    relay(up, client);
    client.resume();
  }
}

/**
 * What stream.pipe() does for two sockets, with three listeners instead of
 * pipe's nine: measured (bench/dns-proxy.mjs) as part of the per-connection cost.
 */
function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (d: Buffer) => { if (!to.write(d)) from.pause(); });
  to.on('drain', () => from.resume());
  from.once('end', () => to.end());
}
