/**
 * The kernel data path: nft DNAT from each listener port to the target's
 * healthy addresses (plan/nft-dns-proxy.ts). It cannot retry a connection
 * on another address as user space does; instead an address leaves the set
 * when a client's connection to it is refused (conntrack events, at once)
 * or a health check (a TCP connect every interval) fails, and comes back
 * when a health check passes.
 */
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import type { DnsProxyForward } from '../../config/dns-proxy.js';
import { describeTarget } from '../../config/dns-proxy.js';
import type { Logger } from '../../observe/log.js';
import { applyNft, deleteTable } from '../../apply/nft.js';
import { toDeleteBatch, toReplaceBatch, toText } from '../../plan/nft.js';
import { dnsProxyTable, hasIpv6, DNS_PROXY_OLD_FAMILIES, DNS_PROXY_TABLE, type KernelForward } from '../../plan/nft-dns-proxy.js';
import type { AddressPool } from './pool.js';
import type { DnsProxyOptions } from '../../config/dns-proxy-options.js';
import { RefusalWatch, type Refusal } from './refusals.js';

export class KernelPath {
  private readonly dead = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  private applying: Promise<void> = Promise.resolve();
  private checking = false;
  private ipv6Forwarding = false;
  private refusals: RefusalWatch | undefined;

  constructor(
    private forwards: readonly DnsProxyForward[],
    private pools: readonly AddressPool[],
    private readonly o: DnsProxyOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // DNATed packets are forwarded, and a new namespace inherits forwarding
    // off from the root namespace: turn it on here, in ours.
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
    // A table of ours in a family we used before would DNAT beside the new one.
    for (const f of DNS_PROXY_OLD_FAMILIES) await deleteTable(f, DNS_PROXY_TABLE).catch(() => {});
    this.refusals = new RefusalWatch((r) => this.refused(r), this.log);
    this.refusals.start();
    await this.check();
    await this.update();
    this.timer = setInterval(() => {
      // A round of probes can outlast the interval (timeouts): never overlap them.
      if (this.checking) return;
      this.checking = true;
      void this.check().then(() => this.update()).finally(() => { this.checking = false; });
    }, this.o.healthIntervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.refusals?.stop();
    await this.applying;
    await applyNft(toDeleteBatch('inet', DNS_PROXY_TABLE)).catch(() => {});
  }

  /** A reload: the lines this path carries from now on (the table follows in update(), one transaction). */
  setLines(forwards: readonly DnsProxyForward[], pools: readonly AddressPool[]): void {
    this.forwards = forwards;
    this.pools = pools;
  }

  /** Addresses per line by health, for metrics. */
  health(): { port: number; up: number; down: number }[] {
    return this.forwards.map((f, i) => {
      const all = this.pools[i]!.addresses;
      const down = all.filter((a) => this.dead.has(`${a}:${f.remotePort}`)).length;
      return { port: f.localPort, up: all.length - down, down };
    });
  }

  /** Addresses per listener minus the dead ones (all of a family if all of it is dead: a retry beats a refusal). */
  private plan(): KernelForward[] {
    return this.forwards.map((f, i) => {
      const all = this.pools[i]!.addresses;
      // Per family: a dead IPv4 address is not replaced by an IPv6 one (a DNAT keeps the client's family).
      const live = (six: boolean) => {
        const fam = all.filter((a) => net.isIPv6(a) === six);
        const up = fam.filter((a) => !this.dead.has(`${a}:${f.remotePort}`));
        return up.length ? up : fam;
      };
      return { port: f.localPort, remotePort: f.remotePort, addresses: [...live(false), ...live(true)], comment: `${f.localPort} -> ${describeTarget(f.target)}:${f.remotePort}` };
    });
  }

  /** Re-applies the table if its content changed; serialised so batches never interleave. */
  update(): Promise<void> {
    this.applying = this.applying.then(async () => {
      const plan = this.plan();
      // Only once an IPv6 address is to be DNATed: forwarding on stops a
      // namespace from taking router advertisements, which it may rely on.
      if (hasIpv6(plan) && !this.ipv6Forwarding) {
        try {
          writeFileSync('/proc/sys/net/ipv6/conf/all/forwarding', '1');
          this.ipv6Forwarding = true;
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'cannot turn on IPv6 forwarding; IPv6 clients will not be forwarded');
        }
      }
      const table = dnsProxyTable(plan);
      const text = toText(table);
      if (text === this.last) return;
      try {
        await applyNft(toReplaceBatch(table));
        this.last = text;
        if (this.o.debug) this.log.debug({ table: text }, 'nft table replaced');
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'applying the DNS proxy nft table failed');
      }
    });
    return this.applying;
  }

  /** A client's connection was refused: out of the set now, not at the next health check. */
  private refused(r: Refusal): void {
    const t = `${r.address}:${r.remotePort}`;
    if (this.dead.has(t)) return;
    const ours = this.forwards.some((f, i) => f.localPort === r.port && f.remotePort === r.remotePort && this.pools[i]!.addresses.includes(r.address));
    if (!ours) return;
    this.dead.add(t);
    this.log.warn({ address: t, port: r.port }, 'connection refused, address removed from the set until a health check passes');
    void this.update();
  }

  /** One TCP connect per distinct address:port; bounded by the connect timeout. */
  private async check(): Promise<void> {
    const targets = new Set<string>();
    this.forwards.forEach((f, i) => this.pools[i]!.addresses.forEach((a) => targets.add(`${a}:${f.remotePort}`)));
    const timeout = Math.min(this.o.connectTimeoutMs, Math.max(this.o.healthIntervalMs, 500));
    await Promise.all([...targets].map(async (t) => {
      const cut = t.lastIndexOf(':');
      const ok = await probe(t.slice(0, cut), Number(t.slice(cut + 1)), timeout, this.o.bindSource);
      if (ok && this.dead.delete(t)) this.log.warn({ address: t }, 'address healthy again, back in the set');
      if (!ok && !this.dead.has(t)) {
        this.dead.add(t);
        this.log.warn({ address: t }, 'health check failed, address removed from the set');
      }
    }));
    for (const t of [...this.dead]) if (!targets.has(t)) this.dead.delete(t);
  }
}

function probe(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress });
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
