/**
 * The DNS proxy engine: one Watcher per name keeps addresses current, one
 * AddressPool per listener spreads connections, and a data path (user space
 * or kernel) carries the bytes. Names are independent: one that never
 * resolves leaves its own port refusing connections and nothing else.
 */
import { describeDnsProxy, describeTarget, type DnsProxyForward } from '../../config/dns-proxy.js';
import type { Logger } from '../../observe/log.js';
import type { ResolvConf } from '../../dns/resolv-conf.js';
import { ResolvConfFile } from '../../dns/resolv-conf-file.js';
import { Watcher } from '../../dns/watcher.js';
import { AddressPool } from './pool.js';
import type { DataPath, DnsProxyOptions } from '../../config/dns-proxy-options.js';
import { UserspaceListener } from './userspace.js';
import { KernelPath } from './kernel.js';

export interface DnsProxy {
  /** Ports whose target has no address yet (readiness reports these). */
  unresolved(): number[];
  stop(): Promise<void>;
}

export interface DnsProxyDeps {
  readonly forwards: readonly DnsProxyForward[];
  readonly options: DnsProxyOptions;
  readonly log: Logger;
  /** Fixed resolver settings (tests); by default /etc/resolv.conf, followed as it changes. */
  readonly resolvConf?: ResolvConf;
  /** Where the forwarding table is printed at startup. */
  readonly out?: NodeJS.WritableStream;
}

export async function startDnsProxy(d: DnsProxyDeps): Promise<DnsProxy> {
  const { forwards, options: o, log } = d;
  const out = d.out ?? process.stdout;
  const paths = forwards.map((f) => lineDataPath(o.dataPath, f));
  const lines = describeDnsProxy(forwards).map((l, i) => `  ${l}${o.dataPath === 'auto' ? ` (${paths[i]})` : ''}\n`);
  out.write(`egress-router dns-proxy (${o.dataPath} data path) forwarding:\n${lines.join('')}`);
  const file = d.resolvConf ? undefined : new ResolvConfFile().watch();
  const conf = d.resolvConf ?? (() => file!.current());
  const watchers = new Map<string, Watcher>();
  const pools = forwards.map((f) => new AddressPool({}, f.target.kind === 'ip' ? [f.target.address] : []));
  const onKernel = forwards.flatMap((f, i) => (paths[i] === 'kernel' ? [i] : []));
  const kernel = onKernel.length ? new KernelPath(onKernel.map((i) => forwards[i]!), onKernel.map((i) => pools[i]!), o, log) : undefined;
  // Sparse: undefined for the lines the kernel carries.
  const listeners = forwards.map((f, i) => (paths[i] === 'userspace'
    ? new UserspaceListener({ port: f.localPort, remotePort: f.remotePort, target: describeTarget(f.target), pool: pools[i]! }, o, log)
    : undefined));

  // One watcher per distinct name, shared by the lines that use it.
  for (const f of forwards) {
    if (f.target.kind !== 'name' || watchers.has(f.target.name)) continue;
    const name = f.target.name;
    const w = new Watcher(name, { conf, ipv6: o.ipv6, minTtl: o.minTtl, maxTtl: o.maxTtl });
    watchers.set(name, w);
    w.on('change', (addrs: string[], prev: string[]) => {
      if (o.debug) log.debug({ name, addresses: addrs, previous: prev }, 'address set changed');
      forwards.forEach((g, i) => {
        if (g.target.kind !== 'name' || g.target.name !== name) return;
        pools[i]!.set(addrs);
        void listeners[i]?.listen().catch((e: Error) => log.error({ port: g.localPort, err: e.message }, 'cannot listen'));
      });
      kernel?.update();
    });
    w.on('failure', (e: Error, n: number) => {
      // Loud while the name has never resolved (its port is refusing clients);
      // a warning once it has, since the last good addresses keep serving.
      const fields = { name, err: e.message, failures: n, keeping: w.addresses };
      if (w.resolved) log.warn(fields, 're-resolution failed, keeping last good addresses');
      else log.error(fields, 'name does not resolve; its port refuses connections until it does');
    });
  }

  // New nameservers: every name asks them now, not at its next TTL or back-off.
  file?.on('change', (c: ResolvConf, prev: ResolvConf) => {
    log.warn({ nameservers: c.nameservers, previous: prev.nameservers, timeoutMs: c.timeoutMs, attempts: c.attempts }, 'resolv.conf changed, re-resolving every name');
    for (const w of watchers.values()) void w.refresh();
  });

  await Promise.all([...watchers.values()].map((w) => w.start()));
  // Listeners with an address (IP targets, resolved names) listen now.
  await Promise.all(listeners.map((l, i) => (l && pools[i]!.addresses.length ? l.listen() : undefined)));
  await kernel?.start();
  // Printed once every listener that can serve does (tests and operators wait on it).
  out.write('dns-proxy ready\n');

  return {
    unresolved: () => forwards.filter((_, i) => pools[i]!.addresses.length === 0).map((f) => f.localPort),
    async stop() {
      file?.close();
      for (const w of watchers.values()) w.stop();
      await Promise.all(listeners.map((l) => l?.close()));
      await kernel?.stop();
    },
  };
}

/**
 * Which path carries one line. In 'auto', a name goes to user space (a
 * connect refused or unanswered by one address is retried on the next; a
 * DNAT cannot re-send a SYN elsewhere) and an IP to the kernel (one address:
 * nothing to retry on, so the faster path loses nothing).
 */
export function lineDataPath(mode: DataPath, f: DnsProxyForward): 'kernel' | 'userspace' {
  if (mode !== 'auto') return mode;
  return f.target.kind === 'ip' ? 'kernel' : 'userspace';
}
