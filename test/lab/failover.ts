/**
 * The failover lab: two router hosts sharing EGRESS_SOURCE on one LAN, with
 * the real keepalived and conntrackd, configured from the shipped examples
 * (examples/host/failover/) with only paths and interface names changed.
 *
 *   client 10.200.0.10 --cli0-- gw (br0 = LAN 192.168.12.1/24) --wan0-- server side 203.0.113.10
 *                                |            |            |
 *                       r1 eth0 .11    r2 eth0 .12    probe eth0 .250 (arping sampler)
 *                        `---- sync0 10.255.0.1 <-> 10.255.0.2 ----'   (conntrackd)
 *
 * keepalived's notify script asks "systemctl" to start or stop the router
 * unit; here systemctl is a stand-in that asks this process over a unix
 * socket, so every router process is this process's child (started,
 * stopped and reaped by PID). Namespaces carry the erl-<pid>-<hex> prefix of
 * lab.ts, so a dead run's lab is swept by the next one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT, killNamespaces, sweepStale } from './lab.js';
import { must, sh } from './sh.js';
import { EXAMPLES, fromExample, writeNodeConfigs } from './failover-config.js';

const PEERS = join(ROOT, 'test', 'lab', 'failover-peers.mjs');
const SAMPLER = join(ROOT, 'test', 'lab', 'arp-sampler.py');

export const FO = {
  vip: '192.168.12.99', gateway: '192.168.12.1', r1: '192.168.12.11', r2: '192.168.12.12', probe: '192.168.12.250',
  client: '10.200.0.10', server: '203.0.113.10', banner: 5001, sink: 5002, source: 5003,
} as const;

export type Node = 'r1' | 'r2';
type NsKey = 'gw' | 'inet' | 'client' | 'probe' | Node;

export interface AddrEvent { t: number; node: Node; added: boolean }
export interface ArpReply { seq: number; t: number; mac: string }
export interface RouterEvent { t: number; node: Node; what: 'start' | 'ready' | 'stop' | 'exit' }

export interface FailoverLab {
  readonly prefix: string;
  readonly ns: Record<NsKey, string>;
  readonly dir: string;
  /** EGRESS_SOURCE added/removed on either router (ip monitor, timestamped by ip). */
  readonly addrEvents: AddrEvent[];
  /** Every ARP reply for EGRESS_SOURCE seen from the probe, in order. */
  readonly arp: ArpReply[];
  readonly routerEvents: RouterEvent[];
  startConntrackd(n: Node): Promise<void>;
  startKeepalived(n: Node): Promise<void>;
  /** SIGTERM to keepalived's PID, as `systemctl stop keepalived` would; resolves when it exited. */
  stopKeepalived(n: Node): Promise<void>;
  /** Pull / plug the host's LAN cable (its bridge port goes down / up). */
  cutLink(n: Node): Promise<void>;
  restoreLink(n: Node): Promise<void>;
  /** Which routers hold EGRESS_SOURCE right now. */
  holders(): Promise<Node[]>;
  waitHolder(n: Node, timeoutMs: number): Promise<number>;
  macvlanMac(n: Node): Promise<string>;
  hasTable(n: Node): Promise<boolean>;
  notifyLog(n: Node): string;
  waitNotify(n: Node, text: string, timeoutMs: number): Promise<void>;
  keepalivedLog(n: Node): string;
  exec(n: NsKey, argv: readonly string[], timeoutMs?: number): ReturnType<typeof sh>;
  /** A failover-peers.mjs client in the client namespace; resolves with its stdout lines. */
  peer(args: string[]): { done: Promise<string[]>; proc: ChildProcess };
  destroy(): Promise<void>;
}

export async function createFailoverLab(): Promise<FailoverLab> {
  await sweepStale();
  const prefix = `erl-${process.pid}-${randomBytes(2).toString('hex')}`;
  const ns = Object.fromEntries((['gw', 'inet', 'client', 'probe', 'r1', 'r2'] as const).map((k) => [k, `${prefix}-${k}`])) as Record<NsKey, string>;
  const dir = mkdtempSync(join(tmpdir(), 'erl-failover-'));
  const children = new Set<ChildProcess>();
  const servers: net.Server[] = [];
  const routers = new Map<Node, ChildProcess>();
  const keepalived = new Map<Node, ChildProcess>();
  const logs = new Map<string, string>();
  const addrEvents: AddrEvent[] = [];
  const arp: ArpReply[] = [];
  const routerEvents: RouterEvent[] = [];
  const ip = (n: NsKey, ...a: string[]) => must(['ip', '-n', ns[n], ...a]);

  const track = (p: ChildProcess, log?: string) => {
    children.add(p);
    p.on('exit', () => children.delete(p));
    if (log) {
      logs.set(log, '');
      const on = (d: Buffer) => logs.set(log, logs.get(log)! + d);
      p.stdout?.on('data', on);
      p.stderr?.on('data', on);
    }
    return p;
  };
  const spawnIn = (n: NsKey, argv: string[], log?: string, env?: NodeJS.ProcessEnv) =>
    track(spawn('ip', ['netns', 'exec', ns[n], ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env }), log);
  const exited = (p: ChildProcess, ms: number) => new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const t = setTimeout(() => { p.kill('SIGKILL'); }, ms);
    p.once('exit', () => { clearTimeout(t); resolve(); });
  });
  const waitFor = async (what: string, ms: number, ok: () => boolean | Promise<boolean>) => {
    const end = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // The router's environment, from the example with the lab's destination file.
  const destination = join(dir, 'destination.txt');
  writeFileSync(destination, readFileSync(join(EXAMPLES, 'destination.txt')));
  const envFile = join(dir, 'egress.env');
  try {
    writeFileSync(envFile, fromExample('egress.env', [['/etc/egress-router/destination.txt', destination]]));
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const routerEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const line of readFileSync(envFile, 'utf8').split('\n')) {
      const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
      if (m) env[m[1]!] = m[2]!;
    }
    return env;
  };
  // What notify calls as `egress-router` (render) and as `systemctl`.
  const router = join(dir, 'egress-router');
  writeFileSync(router, `#!/bin/sh\nexec ${process.execPath} ${BIN} "$@"\n`);
  chmodSync(router, 0o755);

  /** The systemctl stand-in's other end: start/stop the router unit of one host. */
  const supervise = (n: Node, sock: string) => new Promise<void>((resolve) => {
    // Half-open: socat shuts its side down after the request and still reads the reply.
    const srv = net.createServer({ allowHalfOpen: true }, (c) => {
      let req = '';
      c.on('data', (d) => {
        req += d;
        if (!req.includes('\n')) return;
        const [verb] = req.trim().split(/\s+/);
        void (verb === 'start' ? startRouter(n) : stopRouter(n)).then(
          (r) => c.end(`${r}\n`), (e: Error) => c.end(`failed ${e.message}\n`));
      });
      c.on('error', () => {});
    });
    servers.push(srv);
    srv.listen(sock, resolve);
  });
  async function startRouter(n: Node): Promise<string> {
    if (routers.has(n)) return 'ok (running)';
    routerEvents.push({ t: Date.now(), node: n, what: 'start' });
    const p = spawnIn(n, [process.execPath, BIN], `router-${n}`, routerEnv());
    routers.set(n, p);
    p.on('exit', () => { routerEvents.push({ t: Date.now(), node: n, what: 'exit' }); if (routers.get(n) === p) routers.delete(n); });
    await waitFor(`router on ${n}`, 15_000, () => {
      if (p.exitCode !== null) throw new Error(`router on ${n} exited ${p.exitCode}: ${logs.get(`router-${n}`)}`);
      return logs.get(`router-${n}`)!.includes('set-up complete');
    });
    routerEvents.push({ t: Date.now(), node: n, what: 'ready' });
    return 'ok';
  }
  async function stopRouter(n: Node): Promise<string> {
    const p = routers.get(n);
    if (!p) return 'ok (not running)';
    routerEvents.push({ t: Date.now(), node: n, what: 'stop' });
    p.kill('SIGTERM');
    await exited(p, 5000);
    return 'ok';
  }

  const nodeDir = (n: Node) => join(dir, n);
  const peerOf: Record<Node, Node> = { r1: 'r2', r2: 'r1' };
  const syncAddr: Record<Node, string> = { r1: '10.255.0.1', r2: '10.255.0.2' };

  const lab: FailoverLab = {
    prefix, ns, dir, addrEvents, arp, routerEvents,
    exec: (n, argv, timeoutMs) => sh(['ip', 'netns', 'exec', ns[n], ...argv], { timeoutMs }),
    async startConntrackd(n) {
      const d = nodeDir(n);
      spawnIn(n, ['conntrackd', '-C', join(d, 'conntrackd.conf')], `conntrackd-${n}`);
      await waitFor(`conntrackd on ${n}`, 10_000, () => existsSync(join(d, 'conntrackd.ctl')));
    },
    async startKeepalived(n) {
      const d = nodeDir(n);
      rmSync(join(d, 'keepalived.pid'), { force: true });
      const p = spawnIn(n, ['keepalived', '-n', '-l', '-D', '-f', join(d, 'keepalived.conf'), '-p', join(d, 'keepalived.pid'), '-r', join(d, 'vrrp.pid')], `keepalived-${n}`);
      keepalived.set(n, p);
      await waitFor(`keepalived on ${n}`, 10_000, () => (logs.get(`keepalived-${n}`) ?? '').includes('Entering'));
    },
    async stopKeepalived(n) {
      const p = keepalived.get(n);
      if (!p) return;
      keepalived.delete(n);
      p.kill('SIGTERM');
      await exited(p, 10_000);
    },
    async cutLink(n) { await must(['ip', '-n', ns.gw, 'link', 'set', `lan-${n}`, 'down']); },
    async restoreLink(n) { await must(['ip', '-n', ns.gw, 'link', 'set', `lan-${n}`, 'up']); },
    async holders() {
      const out: Node[] = [];
      for (const n of ['r1', 'r2'] as const) {
        const r = await sh(['ip', '-n', ns[n], '-4', '-o', 'addr', 'show']);
        if (r.stdout.includes(` ${FO.vip}/`)) out.push(n);
      }
      return out;
    },
    async waitHolder(n, timeoutMs) {
      const t0 = Date.now();
      await waitFor(`${n} holding ${FO.vip}`, timeoutMs, async () => (await lab.holders()).join() === n);
      return Date.now() - t0;
    },
    async macvlanMac(n) { return (await sh(['ip', 'netns', 'exec', ns[n], 'cat', '/sys/class/net/macvlan0/address'])).stdout.trim(); },
    async hasTable(n) { return (await sh(['ip', 'netns', 'exec', ns[n], 'nft', 'list', 'table', 'ip', 'egress_router'])).code === 0; },
    notifyLog: (n) => { try { return readFileSync(join(nodeDir(n), 'state', 'notify.log'), 'utf8'); } catch { return ''; } },
    waitNotify: (n, text, ms) => waitFor(`'${text}' from ${n}'s notify script`, ms, () => lab.notifyLog(n).includes(text)),
    keepalivedLog: (n) => logs.get(`keepalived-${n}`) ?? '',
    peer(args) {
      const p = spawnIn('client', [process.execPath, PEERS, ...args]);
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      const done = new Promise<string[]>((resolve) => p.on('exit', () => resolve(out.split('\n').filter(Boolean))));
      return { done, proc: p };
    },
    async destroy() {
      for (const n of ['r1', 'r2'] as const) await lab.stopKeepalived(n);
      for (const p of children) p.kill('SIGKILL');
      for (const s of servers) s.close();
      await killNamespaces(Object.values(ns));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const n of Object.values(ns)) await must(['ip', 'netns', 'add', n]);
    for (const n of Object.keys(ns) as NsKey[]) await ip(n, 'link', 'set', 'lo', 'up');
    // gw: the LAN bridge (pinned MAC), the uplink to the server side, the client side.
    await ip('gw', 'link', 'add', 'br0', 'address', '02:00:0c:00:00:01', 'type', 'bridge');
    await sh(['ip', 'netns', 'exec', ns.gw, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0']);
    await ip('gw', 'addr', 'add', `${FO.gateway}/24`, 'dev', 'br0');
    await ip('gw', 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.inet);
    await ip('gw', 'addr', 'add', '203.0.113.1/24', 'dev', 'wan0');
    await ip('inet', 'addr', 'add', `${FO.server}/24`, 'dev', 'eth0');
    await ip('gw', 'link', 'add', 'cli0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.client);
    await ip('gw', 'addr', 'add', '10.200.0.1/24', 'dev', 'cli0');
    await ip('client', 'addr', 'add', `${FO.client}/24`, 'dev', 'eth0');
    await must(['ip', 'netns', 'exec', ns.gw, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    const lan: [NsKey, string, string][] = [['r1', FO.r1, '02:00:0c:00:01:11'], ['r2', FO.r2, '02:00:0c:00:01:12'], ['probe', FO.probe, '02:00:0c:00:01:50']];
    for (const [n, addr, mac] of lan) {
      await ip('gw', 'link', 'add', `lan-${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'address', mac, 'netns', ns[n]);
      await ip('gw', 'link', 'set', `lan-${n}`, 'master', 'br0');
      await ip(n, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
      await ip('gw', 'link', 'set', `lan-${n}`, 'up');
      await ip(n, 'link', 'set', 'eth0', 'up');
    }
    // The dedicated conntrackd link between the two hosts.
    await ip('r1', 'link', 'add', 'sync0', 'type', 'veth', 'peer', 'name', 'sync0', 'netns', ns.r2);
    for (const n of ['r1', 'r2'] as const) {
      await ip(n, 'addr', 'add', `${syncAddr[n]}/30`, 'dev', 'sync0');
      await ip(n, 'link', 'set', 'sync0', 'up');
      await ip(n, 'route', 'add', 'default', 'via', FO.gateway);
    }
    for (const [n, dev] of [['gw', 'br0'], ['gw', 'wan0'], ['gw', 'cli0'], ['inet', 'eth0'], ['client', 'eth0']] as const) await ip(n, 'link', 'set', dev, 'up');
    await ip('inet', 'route', 'add', 'default', 'via', '203.0.113.1');
    await ip('client', 'route', 'add', 'default', 'via', '10.200.0.1');
    await ip('probe', 'route', 'add', 'default', 'via', FO.gateway);
    for (const n of ['r1', 'r2'] as const) {
      writeNodeConfigs({ dir: nodeDir(n), envFile, router, second: n === 'r2', sync: syncAddr[n], peerSync: syncAddr[peerOf[n]] });
      await supervise(n, join(nodeDir(n), 'systemctl.sock'));
      // Every add and delete of EGRESS_SOURCE, timestamped by ip itself.
      const mon = track(spawn('ip', ['-n', ns[n], '-ts', '-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] }));
      let buf = '';
      mon.stdout!.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const m = /^\[([^\]]+)\]\s*(Deleted )?.*inet (\S+)\//.exec(line);
          if (m && m[3] === FO.vip) addrEvents.push({ t: Date.parse(m[1]! + 'Z'), node: n, added: !m[2] });
        }
      });
    }
    // The segment sampled from the probe: every ARP reply for EGRESS_SOURCE to a broadcast request every 20 ms.
    const sampler = spawnIn('probe', ['python3', SAMPLER, 'eth0', FO.probe, FO.vip, '0.02', '120']);
    let abuf = '';
    sampler.stdout!.on('data', (d) => {
      abuf += d;
      let i;
      while ((i = abuf.indexOf('\n')) >= 0) {
        const [seq, t, mac] = abuf.slice(0, i).split(' ');
        abuf = abuf.slice(i + 1);
        if (mac) arp.push({ seq: Number(seq), t: Number(t), mac });
      }
    });
    const srv = spawnIn('inet', [process.execPath, PEERS, 'serve', FO.server, String(FO.banner), String(FO.sink), String(FO.source)], 'server');
    await waitFor('servers', 10_000, () => (logs.get('server') ?? '').includes('ready') || srv.exitCode !== null);
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}
