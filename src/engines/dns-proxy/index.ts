/**
 * The DNS proxy engine: one Watcher per name keeps addresses current, one
 * AddressPool per line spreads connections, and a data path (user space or
 * kernel) carries the bytes. Names are independent: one that never resolves
 * leaves its own port refusing connections and nothing else.
 *
 * Under the shared lifecycle (lifecycle/engine.ts), a reload is a diff of
 * lines keyed by local port: a removed port stops accepting and its open
 * connections drain; a new port opens; a kept port whose target changed
 * sends new connections to the new target (open ones stay). The kernel
 * path's lines are replaced in one nft transaction (conntrack keeps
 * established flows on their DNAT).
 */
import { describeDnsProxy, describeTarget, parseDnsProxyDestinations, type DnsProxyForward } from '../../config/dns-proxy.js';
import type { Logger } from '../../observe/log.js';
import type { ResolvConf } from '../../dns/resolv-conf.js';
import { ResolvConfFile } from '../../dns/resolv-conf-file.js';
import { Watcher } from '../../dns/watcher.js';
import { AddressPool } from './pool.js';
import type { DataPath, DnsProxyOptions } from '../../config/dns-proxy-options.js';
import { UserspaceListener } from './userspace.js';
import { FastListener } from './fast.js';
import type { ListenerBase } from './dial.js';
import { useFastpath, carrierText } from '../fastpath/index.js';
import { KernelPath } from './kernel.js';
import { errorLine, type Engine, type EngineStats, type ListenerStats } from '../../lifecycle/engine.js';

export interface DnsProxy extends Engine {
  /** Ports whose target has no address yet (readiness reports these). */
  unresolved(): number[];
  /** close() then destroy(): the engine's own shutdown without a drain. */
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
  /** EGRESS_DNS_PROXY_DESTINATION_FILE and the text the lines were parsed from (a reload follows it). */
  readonly file?: { readonly path: string; readonly text: string };
}

interface Line {
  readonly forward: DnsProxyForward;
  readonly pool: AddressPool;
  readonly path: 'kernel' | 'userspace';
  readonly listener: ListenerBase | undefined;
}

const same = (a: DnsProxyForward, b: DnsProxyForward) => a.remotePort === b.remotePort && describeTarget(a.target) === describeTarget(b.target);

export async function startDnsProxy(d: DnsProxyDeps): Promise<DnsProxy> {
  const { options: o, log } = d;
  const out = d.out ?? process.stdout;
  const banner = (forwards: readonly DnsProxyForward[]) => describeDnsProxy(forwards)
    .map((l, i) => `  ${l}${o.dataPath === 'auto' ? ` (${lineDataPath(o.dataPath, forwards[i]!)})` : ''}\n`).join('');
  out.write(`egress-router dns-proxy (${o.dataPath} data path) forwarding:\n${banner(d.forwards)}`);
  // The user-space path's carrier, chosen once: the native fast path when it
  // is built (EGRESS_FASTPATH, config/fastpath.ts), else Node sockets. Said
  // at start, so a build without the addon is visible.
  const fast = o.dataPath !== 'kernel' && useFastpath(o.fastpath);
  const Userspace = fast ? FastListener : UserspaceListener;
  if (o.dataPath !== 'kernel') out.write(`user-space relay: ${carrierText(o.fastpath)}\n`);
  const file = d.resolvConf ? undefined : new ResolvConfFile().watch();
  const conf = d.resolvConf ?? (() => file!.current());
  const watchers = new Map<string, Watcher>();
  /** Ports removed by a reload whose connections are still finishing. */
  const draining = new Set<Promise<void>>();
  const gone: ListenerStats[] = [];
  let lines: Line[] = [];
  let kernel: KernelPath | undefined;

  const newLine = (f: DnsProxyForward): Line => {
    const pool = new AddressPool({}, f.target.kind === 'ip' ? [f.target.address] : (f.target.kind === 'name' ? watchers.get(f.target.name)?.addresses ?? [] : []));
    const path = lineDataPath(o.dataPath, f);
    const listener = path === 'userspace' ? new Userspace({ port: f.localPort, remotePort: f.remotePort, target: describeTarget(f.target), pool }, o, log) : undefined;
    return { forward: f, pool, path, listener };
  };
  const listenIfResolved = (l: Line) => (l.listener && l.pool.addresses.length
    ? l.listener.listen().catch((e: Error) => log.error({ port: l.forward.localPort, err: e.message }, 'cannot listen'))
    : undefined);
  const syncKernel = async () => {
    const k = lines.filter((l) => l.path === 'kernel');
    if (!kernel && k.length === 0) return;
    if (!kernel) {
      kernel = new KernelPath(k.map((l) => l.forward), k.map((l) => l.pool), o, log);
      await kernel.start();
      return;
    }
    kernel.setLines(k.map((l) => l.forward), k.map((l) => l.pool));
    await kernel.update();
  };
  /** A watcher per distinct name in use; those no longer used stop. */
  const syncWatchers = (): Promise<void>[] => {
    const names = new Set(lines.flatMap((l) => (l.forward.target.kind === 'name' ? [l.forward.target.name] : [])));
    for (const [name, w] of watchers) if (!names.has(name)) { w.stop(); watchers.delete(name); }
    const started: Promise<void>[] = [];
    for (const name of names) {
      if (watchers.has(name)) continue;
      const w = new Watcher(name, { conf, ipv6: o.ipv6, minTtl: o.minTtl, maxTtl: o.maxTtl });
      watchers.set(name, w);
      w.on('change', (addrs: string[], prev: string[]) => {
        if (o.debug) log.debug({ name, addresses: addrs, previous: prev }, 'address set changed');
        for (const l of lines) {
          if (l.forward.target.kind !== 'name' || l.forward.target.name !== name) continue;
          l.pool.set(addrs);
          void listenIfResolved(l);
        }
        void kernel?.update();
      });
      w.on('failure', (e: Error, n: number) => {
        // Loud while the name has never resolved (its port is refusing clients);
        // a warning once it has, since the last good addresses keep serving.
        const fields = { name, err: e.message, failures: n, keeping: w.addresses };
        if (w.resolved) log.warn(fields, 're-resolution failed, keeping last good addresses');
        else log.error(fields, 'name does not resolve; its port refuses connections until it does');
      });
      started.push(w.start());
    }
    return started;
  };
  const retired = new Set<ListenerBase>();
  const retire = (l: Line) => {
    const ls = l.listener;
    if (!ls) return;
    retired.add(ls);
    const p = ls.drain().finally(() => { draining.delete(p); gone.push(userspaceStats(l)); });
    draining.add(p);
  };

  // New nameservers: every name asks them now, not at its next TTL or back-off.
  file?.on('change', (c: ResolvConf, prev: ResolvConf) => {
    log.warn({ nameservers: c.nameservers, previous: prev.nameservers, timeoutMs: c.timeoutMs, attempts: c.attempts }, 'resolv.conf changed, re-resolving every name');
    for (const w of watchers.values()) void w.refresh();
  });

  lines = d.forwards.map(newLine);
  await Promise.all(syncWatchers());
  for (const l of lines) if (l.forward.target.kind === 'name') l.pool.set(watchers.get(l.forward.target.name)!.addresses);
  // Listeners with an address (IP targets, resolved names) listen now.
  await Promise.all(lines.map(listenIfResolved));
  await syncKernel();
  // Printed once every listener that can serve does (tests and operators wait on it).
  out.write('dns-proxy ready\n');

  const engine: DnsProxy = {
    name: 'dns-proxy',
    follows: d.file && { varName: 'EGRESS_DNS_PROXY_DESTINATION_FILE', path: d.file.path, text: d.file.text },
    async reconfigure(text) {
      let forwards: DnsProxyForward[];
      try {
        forwards = parseDnsProxyDestinations(text);
      } catch (e) {
        return { ok: false, error: errorLine(e) };
      }
      const byPort = new Map(lines.map((l) => [l.forward.localPort, l]));
      const next: Line[] = [];
      let added = 0, changed = 0;
      for (const f of forwards) {
        const old = byPort.get(f.localPort);
        byPort.delete(f.localPort);
        if (old && same(old.forward, f)) { next.push(old); continue; }
        if (old && old.path === 'userspace' && lineDataPath(o.dataPath, f) === 'userspace') {
          // Same port, new target: the listener stays bound, new connections go to the new pool.
          const fresh = newLine(f);
          old.listener!.retarget({ port: f.localPort, remotePort: f.remotePort, target: describeTarget(f.target), pool: fresh.pool });
          next.push({ ...fresh, listener: old.listener });
          changed++;
          continue;
        }
        if (old) retire(old);
        next.push(newLine(f));
        if (old) changed++; else added++;
      }
      const removed = [...byPort.values()];
      for (const l of removed) retire(l);
      lines = next;
      void syncWatchers();
      for (const l of lines) if (l.forward.target.kind === 'name') l.pool.set(watchers.get(l.forward.target.name)?.addresses ?? []);
      try {
        await syncKernel();
        await Promise.all(lines.map(listenIfResolved));
      } catch (e) {
        return { ok: false, error: errorLine(e) };
      }
      out.write(`dns-proxy reloaded:\n${banner(forwards)}`);
      return { ok: true, summary: `${forwards.length} line(s): ${added} added, ${changed} changed, ${removed.length} removed` };
    },
    unresolved: () => lines.filter((l) => l.pool.addresses.length === 0).map((l) => l.forward.localPort),
    missing: () => engine.unresolved().map((p) => `port ${p}: target not resolved yet`),
    stats(): EngineStats {
      const listeners = lines.flatMap((l) => (l.path === 'userspace' ? [userspaceStats(l)] : []));
      // A port a reload removed keeps its counts under its name: counters never go back.
      for (const g of gone) if (!listeners.some((l) => l.listener === g.listener)) listeners.push(g);
      const health = new Map((kernel?.health() ?? []).map((h) => [h.port, h]));
      return {
        listeners,
        dns: [...watchers.values()].map((w) => ({ name: w.name, lookups: w.lookups, failures: w.lookupFailures, addresses: w.addresses.length })),
        backends: lines.map((l) => {
          const port = l.forward.localPort;
          const h = health.get(port);
          if (h) return { listener: `dns-proxy:${port}`, up: h.up, down: h.down };
          const down = l.pool.addresses.filter((a) => l.pool.isDown(a)).length;
          return { listener: `dns-proxy:${port}`, up: l.pool.addresses.length - down, down };
        }),
      };
    },
    async close() {
      file?.close();
      for (const w of watchers.values()) w.stop();
      for (const l of lines) retire(l);
      await Promise.all([...draining]);
      // The kernel's DNAT goes with the process (conntrack keeps open flows going).
      await kernel?.stop();
    },
    destroy() {
      for (const l of lines) void l.listener?.close();
      for (const ls of retired) void ls.close();
    },
    async stop() {
      const closing = engine.close();
      engine.destroy();
      await closing;
    },
  };
  return engine;
}

function userspaceStats(l: Line): ListenerStats {
  const s = l.listener!.stats;
  return { listener: `dns-proxy:${l.forward.localPort}`, accepted: s.accepted, active: l.listener!.active, refused: { ...s.refused }, bytesIn: s.bytesIn, bytesOut: s.bytesOut };
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
