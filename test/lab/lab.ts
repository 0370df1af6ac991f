/**
 * The project's network lab, built from network namespaces only; the root
 * namespace is never touched (every link is created inside a lab namespace).
 *
 *   internet (203.0.113.0/24: servers)  --wan0--  gw (router, br0 = LAN 192.168.12.1/24)
 *                                                  |
 *   node: eth0 192.168.12.2 on the LAN, cbr0 10.128.0.1/24 (the pod network)
 *     |-- pod:    eth0 10.128.0.10, macvlan0 (on node's eth0) for the egress IP
 *     `-- client: eth0 10.128.0.20
 *
 * Each lab has a unique prefix; destroy() kills what it started and deletes
 * its namespaces, and createLab() sweeps labs of test runs that died.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { must, sh, type ExecResult } from './sh.js';

/** The repository root: the nearest folder with package.json (works from build/ too). */
export const ROOT = ((): string => {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) || existsSync(join(d, 'tsconfig.lab.json')) === false) d = dirname(d);
  return d;
})();
export const BIN = join(ROOT, 'bin', 'egress-router');
const SERVERS = join(ROOT, 'test', 'lab', 'servers.mjs');

export type NsKey = 'gw' | 'inet' | 'node' | 'pod' | 'client';

export const ADDR = {
  gateway: '192.168.12.1',
  nodeLan: '192.168.12.2',
  source: '192.168.12.99',
  node: '10.128.0.1',
  pod: '10.128.0.10',
  client: '10.128.0.20',
  inet: ['203.0.113.10', '203.0.113.11', '203.0.113.12'],
  fallback: '203.0.113.99',
  dns: '203.0.113.53',
} as const;

/** IPv6 twins of ADDR, present when the lab is built with `ipv6: true`. */
export const ADDR6 = {
  gateway: '2001:db8:12::1',
  source: '2001:db8:12::99',
  pod: 'fd00:128::10',
  client: 'fd00:128::20',
  node: 'fd00:128::1',
  inet: ['2001:db8:113::10', '2001:db8:113::11'],
} as const;

export interface LabOptions {
  /** Add IPv6 addresses and routes (ADDR6) beside the IPv4 ones. */
  ipv6?: boolean;
  /** Create macvlan0 in the pod as OpenShift's annotation does (default true). */
  macvlanInPod?: boolean;
  /** Test servers to start in the internet namespace. */
  tcp?: string[];
  udp?: string[];
  http?: string[];
  echo?: string[];
}

export interface Lab {
  readonly prefix: string;
  readonly ns: Record<NsKey, string>;
  readonly addr: typeof ADDR;
  exec(ns: NsKey, argv: readonly string[], opts?: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv }): Promise<ExecResult>;
  spawn(ns: NsKey, argv: readonly string[], opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
  /** Start a process and wait until it prints `text` (or fail after timeoutMs). */
  spawnReady(ns: NsKey, argv: readonly string[], text: string | RegExp, opts?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<ChildProcess & { output(): string }>;
  addInetAddress(ip: string): Promise<void>;
  writeResolvConf(ns: NsKey, nameserver: string): void;
  /** Run `egress-router` in the pod (EGRESS_ROUTER_MODE=init unless env says otherwise). */
  setupRouter(env?: Record<string, string>, ns?: NsKey): Promise<ExecResult>;
  routerEnv(extra?: Record<string, string>): NodeJS.ProcessEnv;
  startServers(s: { tcp?: string[]; udp?: string[]; http?: string[]; echo?: string[] }): Promise<ChildProcess>;
  destroy(): Promise<void>;
}

const MAC = { br0: '02:00:0c:00:00:01', node0: '02:00:0c:00:00:02', nodeEth0: '02:00:0c:00:00:03', cbr0: '02:00:0a:00:00:01' };

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  await sweepStale();
  const prefix = `erl-${process.pid}-${randomBytes(2).toString('hex')}`;
  const ns = { gw: `${prefix}-gw`, inet: `${prefix}-inet`, node: `${prefix}-node`, pod: `${prefix}-pod`, client: `${prefix}-client` };
  const children = new Set<ChildProcess>();
  const ip = (n: NsKey, ...a: string[]) => must(['ip', '-n', ns[n], ...a]);
  const sysctl = (n: NsKey, kv: string) => must(['ip', 'netns', 'exec', ns[n], 'sysctl', '-qw', kv]);

  const lab: Lab = {
    prefix, ns, addr: ADDR,
    exec: (n, argv, o = {}) => sh(['ip', 'netns', 'exec', ns[n], ...argv], o),
    spawn(n, argv, o = {}) {
      const p = spawn('ip', ['netns', 'exec', ns[n], ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
      children.add(p);
      p.on('exit', () => children.delete(p));
      return p;
    },
    async spawnReady(n, argv, text, o = {}) {
      const p = lab.spawn(n, argv, o) as ChildProcess & { output(): string };
      let out = '';
      p.output = () => out;
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready in time; output:\n${out}`)), o.timeoutMs ?? 15_000);
        const on = (d: Buffer) => {
          out += d;
          if (typeof text === 'string' ? out.includes(text) : text.test(out)) { clearTimeout(t); resolve(); }
        };
        p.stdout!.on('data', on);
        p.stderr!.on('data', on);
        p.on('exit', (code) => { clearTimeout(t); reject(new Error(`${argv.join(' ')} exited ${code}:\n${out}`)); });
      });
      p.removeAllListeners('exit');
      p.on('exit', () => children.delete(p));
      return p;
    },
    addInetAddress: async (a) => { await ip('inet', 'addr', 'add', `${a}/24`, 'dev', 'eth0'); },
    writeResolvConf(n, nameserver) {
      mkdirSync(`/etc/netns/${ns[n]}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns[n]}/resolv.conf`, `nameserver ${nameserver}\noptions timeout:1 attempts:2\n`);
    },
    routerEnv: (extra = {}) => ({
      ...process.env,
      EGRESS_SOURCE: ADDR.source, EGRESS_GATEWAY: ADDR.gateway, EGRESS_ROUTER_MODE: 'init',
      EGRESS_NFT_TABLE: 'egress_router', ...extra,
    }),
    setupRouter: (env = {}, n = 'pod') => lab.exec(n, [process.execPath, BIN, '--log-format', 'json'], { env: lab.routerEnv(env), timeoutMs: 20_000 }),
    startServers: (s) => lab.spawnReady('inet', [process.execPath, SERVERS,
      '--tcp', (s.tcp ?? []).join(','), '--udp', (s.udp ?? []).join(','), '--http', (s.http ?? []).join(','), '--echo', (s.echo ?? []).join(',')], 'ready'),
    async destroy() {
      for (const p of children) p.kill('SIGKILL');
      await killNamespaces(Object.values(ns));
    },
  };

  try {
    for (const n of Object.values(ns)) await must(['ip', 'netns', 'add', n]);
    for (const n of Object.keys(ns) as NsKey[]) await ip(n, 'link', 'set', 'lo', 'up');
    // gw: the LAN bridge and the uplink to the internet.
    await ip('gw', 'link', 'add', 'br0', 'address', MAC.br0, 'type', 'bridge');
    await bridgeNoNetfilter(ns.gw);
    await ip('gw', 'addr', 'add', `${ADDR.gateway}/24`, 'dev', 'br0');
    await ip('gw', 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.inet);
    await ip('gw', 'addr', 'add', '203.0.113.1/24', 'dev', 'wan0');
    await sysctl('gw', 'net.ipv4.ip_forward=1');
    // internet: servers on several addresses.
    for (const a of [...ADDR.inet, ADDR.fallback, ADDR.dns]) await ip('inet', 'addr', 'add', `${a}/24`, 'dev', 'eth0');
    // node: eth0 on the LAN (master of macvlan0), cbr0 for the pod network.
    await ip('gw', 'link', 'add', 'node0', 'address', MAC.node0, 'type', 'veth', 'peer', 'name', 'eth0', 'address', MAC.nodeEth0, 'netns', ns.node);
    await ip('gw', 'link', 'set', 'node0', 'master', 'br0');
    await ip('node', 'addr', 'add', `${ADDR.nodeLan}/24`, 'dev', 'eth0');
    await ip('node', 'link', 'add', 'cbr0', 'address', MAC.cbr0, 'type', 'bridge');
    await bridgeNoNetfilter(ns.node);
    await ip('node', 'addr', 'add', `${ADDR.node}/24`, 'dev', 'cbr0');
    for (const [n, addr, port] of [['pod', ADDR.pod, 'vpod'], ['client', ADDR.client, 'vclient']] as const) {
      await ip('node', 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[n]);
      await ip('node', 'link', 'set', port, 'master', 'cbr0');
      await ip(n, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    }
    for (const [n, dev] of [['gw', 'br0'], ['gw', 'wan0'], ['gw', 'node0'], ['inet', 'eth0'], ['node', 'eth0'], ['node', 'cbr0'], ['node', 'vpod'], ['node', 'vclient'], ['pod', 'eth0'], ['client', 'eth0']] as const) {
      await ip(n, 'link', 'set', dev, 'up');
    }
    await ip('inet', 'route', 'add', 'default', 'via', '203.0.113.1');
    await ip('node', 'route', 'add', 'default', 'via', ADDR.gateway);
    // Pod and client: the cluster's default route via the node.
    await ip('pod', 'route', 'add', 'default', 'via', ADDR.node);
    await ip('client', 'route', 'add', 'default', 'via', ADDR.node);
    if (opts.ipv6) await addIpv6(ip, sysctl);
    if (opts.macvlanInPod !== false) {
      // What OpenShift's assign-macvlan annotation hands the pod.
      await ip('node', 'link', 'add', 'macvlan0', 'link', 'eth0', 'type', 'macvlan', 'mode', 'bridge');
      await ip('node', 'link', 'set', 'macvlan0', 'netns', ns.pod);
    }
    if (opts.tcp || opts.udp || opts.http || opts.echo) await lab.startServers(opts);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

type IpFn = (n: NsKey, ...a: string[]) => Promise<string>;

async function addIpv6(ip: IpFn, sysctl: (n: NsKey, kv: string) => Promise<string>): Promise<void> {
  // No duplicate address detection in the lab: addresses are usable at once.
  for (const n of ['gw', 'inet', 'node', 'pod', 'client'] as const) {
    await sysctl(n, 'net.ipv6.conf.all.accept_dad=0');
    await sysctl(n, 'net.ipv6.conf.default.accept_dad=0');
  }
  await sysctl('gw', 'net.ipv6.conf.all.forwarding=1');
  await ip('gw', 'addr', 'add', `${ADDR6.gateway}/64`, 'dev', 'br0', 'nodad');
  await ip('gw', 'addr', 'add', '2001:db8:113::1/64', 'dev', 'wan0', 'nodad');
  for (const a of ADDR6.inet) await ip('inet', 'addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad');
  await ip('inet', 'route', 'add', 'default', 'via', '2001:db8:113::1');
  await ip('node', 'addr', 'add', `${ADDR6.node}/64`, 'dev', 'cbr0', 'nodad');
  await ip('pod', 'addr', 'add', `${ADDR6.pod}/64`, 'dev', 'eth0', 'nodad');
  await ip('client', 'addr', 'add', `${ADDR6.client}/64`, 'dev', 'eth0', 'nodad');
  await ip('pod', 'route', 'add', 'default', 'via', ADDR6.node);
}

async function bridgeNoNetfilter(nsName: string): Promise<void> {
  // br_netfilter is loaded here: bridged frames would otherwise hit IP hooks.
  await sh(['ip', 'netns', 'exec', nsName, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
}

export async function killNamespaces(names: string[]): Promise<void> {
  for (const n of names) {
    const r = await sh(['ip', 'netns', 'pids', n]);
    for (const pid of r.stdout.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
    await sh(['ip', 'netns', 'del', n]);
    if (existsSync(`/etc/netns/${n}`)) rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
  }
}

/** Remove labs left by test processes that no longer exist (failover.ts uses the same prefix). */
export async function sweepStale(): Promise<void> {
  if (!existsSync('/run/netns')) return;
  const stale = readdirSync('/run/netns').filter((n) => {
    const m = /^erl-(\d+)-[0-9a-f]{4}-/.exec(n);
    return m && Number(m[1]) !== process.pid && !existsSync(`/proc/${m[1]}`);
  });
  await killNamespaces(stale);
}
