/**
 * DNS proxy mode in the lab, both data paths, against a real DNS server in
 * the internet namespace: asserted from the client's side and in the
 * servers' own words (which server answered, which source IP it saw).
 * The user-space path runs on the native fast path (the default when it is
 * built); a second proxy beside it on Node sockets (EGRESS_FASTPATH=0, ports
 * +100) takes the user-space behaviour tests too: retry, timeout, debug lines.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer, type Zone } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const SERVERS = { tcp: [`${A}:80`, `${B}:80`, `${C}:80`, `${A}:9000`], echo: [`${A}:7000`, `${C}:7000`] };
const ZONE: Zone = {
  'two.example': { A: [A, B], ttl: 2 },
  'one.example': { A: [C], ttl: 2 },
  // B refuses on 9000: one dead backend address.
  'dead.example': { A: [A, B], ttl: 2 },
  // C drops SYNs to 9000 (nft in the internet namespace): a black-holed address.
  'hole.example': { A: [A, C], ttl: 2 },
};
const TABLE = [
  `8001 ${A} 80`,
  '80 one.example',
  '8002 two.example 80',
  '8003 one.example 80',
  '8004 dead.example 9000',
  '8005 missing.example 80',
  '8006 hole.example 9000',
  '8007 one.example 7000',
].join('\n');

// The Node-socket proxy's lines: the user-space behaviours only.
const SOCKET_TABLE = ['8102 two.example 80', '8104 dead.example 9000', '8106 hole.example 9000'].join('\n');
const ADDON = existsSync(new URL('../../native/fastpath/build/Release/fastpath.node', import.meta.url));

type Path = 'userspace' | 'kernel';

async function banner(lab: Lab, port: number) {
  // curl's telnet:// prints the server's banner line; -m bounds it.
  return lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:${port}`], { input: '', timeoutMs: 8000 });
}

const sees = (server: string, port: number) => new RegExp(`^${server.replace(/\./g, '\\.')}:${port} sees ${ADDR.source.replace(/\./g, '\\.')}:\\d+`);

async function until(what: string, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.each<Path>(['userspace', 'kernel'])('dns-proxy, %s data path', (path) => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;
  /** User space only: the same behaviours on Node sockets. */
  let sockets: Awaited<ReturnType<Lab['spawnReady']>> | undefined;
  /** Each user-space proxy with the port offset of its lines. */
  const carriers = () => [{ p: proxy, off: 0 }, ...(sockets ? [{ p: sockets, off: 100 }] : [])];

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab(SERVERS);
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
    lab.writeResolvConf('pod', ADDR.dns);
    const drop = await lab.exec('inet', ['nft', `add table ip hole; add chain ip hole in { type filter hook input priority 0; }; add rule ip hole in ip daddr ${C} tcp dport 9000 drop`]);
    expect(drop.code, drop.stderr).toBe(0);
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'dns-proxy' });
    expect(init.code, init.stderr).toBe(0);
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({
        EGRESS_DNS_PROXY_DESTINATION: TABLE, EGRESS_DNS_PROXY_DEBUG: '1', EGRESS_DNS_PROXY_MODE: path,
        EGRESS_DNS_PROXY_TTL_MIN: '1', EGRESS_DNS_PROXY_HEALTH_INTERVAL: '0.5', EGRESS_DNS_PROXY_CONNECT_TIMEOUT: '1',
      }),
    });
    if (path === 'userspace') {
      sockets = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
        env: lab.routerEnv({
          EGRESS_DNS_PROXY_DESTINATION: SOCKET_TABLE, EGRESS_DNS_PROXY_DEBUG: '1', EGRESS_DNS_PROXY_MODE: path, EGRESS_FASTPATH: '0',
          EGRESS_DNS_PROXY_TTL_MIN: '1', EGRESS_DNS_PROXY_CONNECT_TIMEOUT: '1',
        }),
      });
    }
  });
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
  });

  it('prints the forwarding table at start, and what carries the user-space path', () => {
    expect(proxy.output()).toContain('port 8002 -> two.example:80');
    expect(proxy.output()).toContain('port 8005 -> missing.example:80');
    if (path === 'kernel') expect(proxy.output()).not.toContain('user-space relay');
    else {
      if (ADDON) expect(proxy.output()).toContain('user-space relay: native fast path\n');
      expect(sockets!.output()).toContain('user-space relay: node sockets (EGRESS_FASTPATH=0)\n');
    }
  });

  it('forwards to an IP target on its remote port, from the egress source IP', async () => {
    expect((await banner(lab, 8001)).stdout).toMatch(sees(A, 80));
  });

  it('forwards to a name, on the listener port when no remote port is given', async () => {
    expect((await banner(lab, 80)).stdout).toMatch(sees(C, 80));
    expect((await banner(lab, 8003)).stdout).toMatch(sees(C, 80));
  });

  it('spreads connections over both A records', async () => {
    for (const { off } of carriers()) {
      const seen = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const r = await banner(lab, 8002 + off);
        expect(r.stdout).toMatch(/sees 192\.168\.12\.99:/);
        seen.add(r.stdout.split(' ')[0]!);
      }
      expect(seen).toEqual(new Set([`${A}:80`, `${B}:80`]));
    }
  });

  it('serves every client from the live address when the other one is dead', async () => {
    // The kernel path learns it from health checks (every 0.5 s here).
    if (path === 'kernel') await new Promise((r) => setTimeout(r, 1500));
    for (const { off } of carriers()) for (let i = 0; i < 6; i++) expect((await banner(lab, 8004 + off)).stdout).toMatch(sees(A, 9000));
  });

  it('gives up on a black-holed address after the connect timeout and serves the client from the other', async () => {
    if (path === 'kernel') await new Promise((r) => setTimeout(r, 2500));
    for (const { p, off } of carriers()) {
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = Date.now();
        expect((await banner(lab, 8006 + off)).stdout).toMatch(sees(A, 9000));
        times.push(Date.now() - t0);
      }
      // User space: the first client that drew C waited the 1 s connect timeout, then was retried on A
      // (and C stays marked down for the next ones). Kernel: health checks removed C before.
      if (path === 'userspace') {
        expect(Math.max(...times)).toBeGreaterThanOrEqual(900);
        expect(p.output()).toMatch(/"address":"203\.0\.113\.12".*"err":"ETIMEDOUT".*connect failed/);
      } else {
        expect(Math.max(...times)).toBeLessThan(900);
      }
    }
  });

  it('refuses connections on the port of a name that does not resolve, without affecting others', async () => {
    const t0 = Date.now();
    const r = await banner(lab, 8005);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/refused|couldn't connect/i);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect((await banner(lab, 8001)).stdout).toMatch(sees(A, 80));
    expect(proxy.output()).toMatch(/"name":"missing.example".*does not resolve/);
  });

  it('starts serving that name once it resolves (its lookups keep being retried)', async () => {
    dns.setZone({ ...ZONE, 'missing.example': { A: [B], ttl: 2 } });
    await until('missing.example served', async () => sees(B, 80).test((await banner(lab, 8005)).stdout), 12_000);
  });

  it('prints debug lines: per connection (user space) and per changed address set', () => {
    const lines = proxy.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.find((l) => l.msg === 'address set changed' && l.name === 'missing.example')).toMatchObject({ addresses: [B] });
    if (path === 'kernel') return;
    // The Node-socket proxy's lines (8102) are the reference the fast path's must match.
    for (const { p, off } of carriers()) {
      const mine = off ? p.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>) : lines;
      const c = mine.find((l) => l.msg === 'connection' && l.port === 8002 + off);
      expect(c).toMatchObject({ name: 'two.example', bytesFromClient: 0, end: 'closed' });
      expect(Object.keys(c!).sort()).toEqual(['address', 'bytesFromClient', 'bytesToClient', 'client', 'durationMs', 'end', 'level', 'msg', 'name', 'port', 'time']);
      expect(c!.client).toMatch(/^10\.128\.0\.20:\d+$/);
      expect([`${A}`, `${B}`]).toContain(c!.address);
      expect(c!.bytesToClient).toBeGreaterThan(20);
      expect(typeof c!.durationMs).toBe('number');
      // The dead address's client: retried, its line names the live one.
      const dead = mine.filter((l) => l.msg === 'connection' && l.port === 8004 + off);
      expect(dead.length).toBeGreaterThanOrEqual(6);
      expect(dead.every((l) => l.address === A && l.end === 'closed')).toBe(true);
      expect(mine.find((l) => l.msg === 'connect failed, address marked down' && l.port === 8004 + off))
        .toMatchObject({ level: 40, name: 'dead.example', address: B, err: 'ECONNREFUSED' });
    }
  });

  it('follows a changed record after its TTL; a connection made before keeps its address', async () => {
    // Long-lived, to an echo server: reads the banner, and 5 s later (after the change) sends a line back.
    const script = `const s=require('net').connect(8007,'${ADDR.pod}');let o='';s.on('data',d=>{o+=d;if(o.includes('still'))s.end()});`
      + `setTimeout(()=>s.write('still\\n'),5000);s.on('close',()=>console.log(o));s.on('error',e=>console.log(e.code))`;
    const early = lab.exec('client', [process.execPath, '-e', script], { timeoutMs: 15_000 });
    // The record changes only once that connection is up (node's start-up under load can take seconds).
    await until('early connection established', async () => (await lab.exec('client', ['ss', '-Htn', 'state', 'established', 'dst', `${ADDR.pod}:8007`])).stdout.trim() !== '', 10_000);
    dns.setZone({ ...ZONE, 'one.example': { A: [A], ttl: 2 }, 'missing.example': { A: [B], ttl: 2 } });
    const t0 = Date.now();
    await until('one.example moved to A', async () => sees(A, 80).test((await banner(lab, 8003)).stdout), 8000);
    // TTL 2 s plus a lookup and the table replacement.
    expect(Date.now() - t0).toBeLessThan(5000);
    const old = (await early).stdout;
    expect(old).toMatch(sees(C, 7000));
    expect(old, old).toContain('still');
  });

  it('keeps serving the last good addresses when the DNS server is down', async () => {
    await dns.stop();
    // Past two TTLs: re-resolutions have failed by now.
    await new Promise((r) => setTimeout(r, 4500));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await banner(lab, 8002)).stdout.split(' ')[0]!);
    expect(seen).toEqual(new Set([`${A}:80`, `${B}:80`]));
    expect(proxy.output()).toMatch(/keeping last good addresses/);
  });
});
