/**
 * HTTP proxy mode in the lab: the proxy in the pod (after the init container
 * set up macvlan0), a real DNS server and real servers in the internet
 * namespace, real curl in the client namespace. Servers report the address
 * they see, so "leaves with the egress source IP" is asserted in their words.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createLab, ADDR, ADDR6, ROOT, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const V6 = ADDR6.inet[0];
const REFUSING = '203.0.113.13';
const CLIENT = join(ROOT, 'test/lab/proxy-client.mjs');
const POLICY = [
  `!${C}`, // 1: a CIDR deny first, so names are judged on their addresses too
  '!blocked.corp.example', // 2
  '*.corp.example', // 3
  'allowed.example', // 4
  `${A}/31`, // 5: 203.0.113.10 and .11
  '2001:db8:113::/64', // 6
].join('\n');
const ZONE = {
  'allowed.example': { A: [A] },
  'corp.example': { A: [B] },
  'www.corp.example': { A: [B] },
  'blocked.corp.example': { A: [B] },
  'rebind.corp.example': { A: [C] },
  'mixed.corp.example': { A: [B, C] },
  'other.example': { A: [ADDR.fallback] },
  'cidr.example': { A: [B] },
  // The first address refuses (assigned, no server), the second serves.
  'retry.corp.example': { A: [REFUSING, B] },
};
const PROXY = `http://${ADDR.pod}:8080`;
const OPEN = `http://${ADDR.pod}:8081`;
const src = ADDR.source.replace(/\./g, '\\.');
const sees = (server: string) => new RegExp(`^${server.replace(/\./g, '\\.')}:80 sees ${src}:\\d+`);

describe('http-proxy mode', () => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;

  /** curl through a proxy; stdout is the body then a last line with the status. */
  async function get(url: string, opts: { proxy?: string; tunnel?: boolean; ns?: 'client' | 'pod'; max?: number } = {}) {
    const argv = ['curl', '-sS', '-m', String(opts.max ?? 5), '-x', opts.proxy ?? PROXY, '-w', '\n%{http_code}', ...(opts.tunnel ? ['-p'] : []), url];
    const r = await lab.exec(opts.ns ?? 'client', argv, { timeoutMs: 15_000 });
    const lines = r.stdout.split('\n');
    // The body's own final newline is dropped, so exact texts compare cleanly.
    return { status: Number(lines.pop()), body: lines.join('\n').replace(/\n$/, ''), stderr: r.stderr, code: r.code };
  }

  /** The proxy's answer to curl's CONNECT (curl itself then fails on anything but 200). */
  async function connectStatus(url: string, proxy = PROXY) {
    const r = await lab.exec('client', ['curl', '-sS', '-m', '5', '-o', '/dev/null', '-w', '%{http_connect}', '-p', '-x', proxy, url], { timeoutMs: 15_000 });
    return r.stdout;
  }

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ ipv6: true, http: [`${A}:80`, `${B}:80`, `${C}:80`, `${ADDR.fallback}:80`, `[${V6}]:80`], echo: [`${A}:7000`] });
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
    await lab.addInetAddress(REFUSING);
    lab.writeResolvConf('pod', ADDR.dns);
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(init.code, init.stderr).toBe(0);
    // Dual stack for the IPv6-literal case: the egress IPv6 address on
    // macvlan0 and the default route to the gateway, as an IPv6 egress IP gets.
    await lab.exec('pod', ['ip', 'addr', 'add', `${ADDR6.source}/64`, 'dev', 'macvlan0', 'nodad']);
    await lab.exec('pod', ['ip', '-6', 'route', 'replace', 'default', 'via', ADDR6.gateway, 'dev', 'macvlan0']);
    // A target that never answers a SYN: the 504 case.
    await lab.exec('inet', ['nft', `add table inet erh; add chain inet erh in { type filter hook input priority 0; }; add rule inet erh in tcp dport 9999 drop`]);
    // The default accept path (EGRESS_FASTPATH unset): asserted below.
    const env = { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: POLICY, EGRESS_FASTPATH: undefined };
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy', '--header-timeout', '1500', '--connect-timeout', '1500'], 'http-proxy listening', { env });
    const openEnv = { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: '!*.corp.example\n*', EGRESS_HTTP_PROXY_CONNECT_PORTS: '80', EGRESS_HTTP_PROXY_CLIENTS: `${ADDR.client}/32` };
    await lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy', '--port', '8081'], 'http-proxy listening', { env: openEnv });
  }, 90_000);
  afterAll(async () => { await dns?.stop(); await lab?.destroy(); });

  it('prints the policy at start-up', () => {
    const first = JSON.parse(proxy.output().split('\n')[0]!);
    expect(first.policy).toEqual(['1. deny 203.0.113.12/32', '2. deny blocked.corp.example', '3. allow corp.example and its subdomains',
      '4. allow allowed.example', '5. allow 203.0.113.10/31', '6. allow 2001:db8:113::/64', '7. deny everything else']);
  });

  it('accepts on the native fast path by default: the addon is built, and no silent fallback to net.Socket', () => {
    // As the engine loads it: a missing build fails here rather than passing on net.Socket.
    expect(() => createRequire(import.meta.url)('egress-router-fastpath')).not.toThrow();
    const started = proxy.output().split('\n').find((l) => l.includes('"msg":"http-proxy listening"'));
    expect(JSON.parse(started!)).toMatchObject({ port: 8080, accept: 'fastpath' });
  });

  it('allowed name, plain GET: reaches the server from the egress source IP, Via added', async () => {
    const r = await get('http://allowed.example/');
    expect(r.status).toBe(200);
    expect(r.body).toMatch(sees(A));
  });

  it('allowed name, CONNECT: the tunnel leaves from the egress source IP', async () => {
    const r = await get('http://allowed.example/', { tunnel: true });
    expect(r.status).toBe(200);
    expect(r.body).toMatch(sees(A));
  });

  it('*.domain allows the domain and its subdomains; a deny before it wins', async () => {
    expect((await get('http://corp.example/')).body).toMatch(sees(B));
    expect((await get('http://WWW.Corp.Example./')).body).toMatch(sees(B));
    const d = await get('http://blocked.corp.example/');
    expect(d).toMatchObject({ status: 403, body: 'denied by rule 2: !blocked.corp.example' });
  });

  it('default deny: a name no rule allows, with its address not in any allowed range', async () => {
    expect(await get('http://other.example/')).toMatchObject({ status: 403, body: 'denied: no rule allowed it' });
    expect(await connectStatus('http://other.example/')).toBe('403');
  });

  it('CIDR rules: allow and deny IP literals, in any spelling', async () => {
    expect((await get(`http://${B}/`)).body).toMatch(sees(B));
    expect((await get('http://cidr.example/')).body).toMatch(sees(B));
    for (const spelling of [C, '3405803788', '0xcb.0.113.12', '0313.0.0161.014', `[::ffff:${C}]`, `${C}.`]) {
      expect(await get(`http://${spelling}/`), spelling).toMatchObject({ status: 403, body: `denied by rule 1: !${C}` });
    }
  });

  it('a name resolving into a denied range is denied, even alongside allowed addresses', async () => {
    expect(await get('http://rebind.corp.example/')).toMatchObject({ status: 403, body: `denied by rule 1: !${C}` });
    expect(await get('http://mixed.corp.example/')).toMatchObject({ status: 403, body: `denied by rule 1: !${C}` });
  });

  it('IPv6 literal: allowed by its CIDR and reaches the server from the IPv6 egress address', async () => {
    const r = await get(`http://[${V6}]/`);
    expect(r.status).toBe(200);
    expect(r.body).toMatch(new RegExp(`^${V6}:80 sees ${ADDR6.source}:\\d+`));
    expect(await get('http://[2001:db8:114::1]/')).toMatchObject({ status: 403 });
  });

  it('502 when the target refuses or does not resolve; 504 when it never answers', async () => {
    const refused = await get(`http://${A}:81/`);
    expect(refused.status).toBe(502);
    expect(refused.body).toMatch(/ECONNREFUSED/);
    expect(await connectStatus('http://allowed.example:81/')).toBe('502');
    const nx = await get('http://nxdomain.corp.example/');
    expect(nx.status).toBe(502);
    expect(nx.body).toMatch(/does not resolve/);
    const t0 = Date.now();
    expect((await get(`http://${A}:9999/`)).status).toBe(504);
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(await connectStatus(`http://${A}:9999/`)).toBe('504');
  });

  it('a refused connect moves on to the next allowed address (plain GET and CONNECT)', async () => {
    for (const tunnel of [false, true]) {
      const r = await get('http://retry.corp.example/', { tunnel });
      expect(r.status).toBe(200);
      expect(r.body).toMatch(sees(B));
    }
    // The log names the address that answered (lines leave at the end of the
    // proxy's event-loop turn, possibly after curl is done: wait, bounded).
    let lines: Array<{ upstream: string }> = [];
    for (let i = 0; i < 40 && lines.length < 2; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      lines = proxy.output().split('\n').filter((l) => l.includes('retry.corp.example')).map((l) => JSON.parse(l));
    }
    expect(lines.map((l) => l.upstream)).toEqual([`${B}:80`, `${B}:80`]);
  });

  it('origin-form requests to the proxy itself get 400', async () => {
    const r = await lab.exec('client', ['curl', '-sS', '-m', '5', '-w', '\n%{http_code}', `${PROXY}/`]);
    expect(r.stdout).toMatch(/\n400$/);
  });

  it('CONNECT half-close: the client shuts down writing and still gets the reply', async () => {
    const r = await lab.exec('client', [process.execPath, CLIENT, 'halfclose', `${ADDR.pod}:8080`, `${A}:7000`], { timeoutMs: 15_000 });
    expect(r.stdout).toMatch(new RegExp(`^HTTP/1.1 200 Connection established\\r\\n\\r\\n${A.replace(/\./g, '\\.')}:7000 sees ${src}:\\d+\\nping\\n$`));
  });

  it('a slowloris client is cut off at the header deadline while others are served', async () => {
    const slow = lab.exec('client', [process.execPath, CLIENT, 'slowloris', `${ADDR.pod}:8080`, '40', '200'], { timeoutMs: 20_000 });
    // Served meanwhile, repeatedly, while the slow client holds its connection.
    for (let i = 0; i < 5; i++) expect((await get('http://allowed.example/')).status).toBe(200);
    const s = JSON.parse((await slow).stdout);
    expect(s.closedAfterMs).toBeGreaterThanOrEqual(1400);
    expect(s.closedAfterMs).toBeLessThan(4000);
    expect(s.lines).toBeLessThan(40);
    expect(s.reply).toMatch(/^HTTP\/1.1 408/);
  });

  it('trailing * allows everything not denied before it', async () => {
    expect((await get(`http://${ADDR.fallback}/`, { proxy: OPEN })).body).toMatch(sees(ADDR.fallback));
    expect(await get('http://www.corp.example/', { proxy: OPEN })).toMatchObject({ status: 403, body: 'denied by rule 1: !*.corp.example' });
  });

  it('optional CONNECT port list and client allow-list', async () => {
    expect((await get(`http://${A}/`, { proxy: OPEN, tunnel: true })).body).toMatch(sees(A));
    expect(await connectStatus(`http://${A}:7000/`, OPEN)).toBe('403');
    // The pod itself is not on the client list.
    expect(await get(`http://${A}/`, { proxy: OPEN, ns: 'pod' })).toMatchObject({ status: 403, body: 'denied: client address not allowed' });
  });

  it('host placement: outbound sockets bind EGRESS_SOURCE (plain HTTP and CONNECT)', async () => {
    // Bare metal: the proxy runs in the node's namespace, whose own address
    // would otherwise be the source; a second LAN address plays the egress IP.
    const egress = '192.168.12.98';
    await lab.exec('node', ['ip', 'addr', 'add', `${egress}/24`, 'dev', 'eth0']);
    const env = { ...process.env, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: `${egress}/24`, EGRESS_HTTP_PROXY_DESTINATION: `203.0.113.0/24\n${V6}` };
    await lab.spawnReady('node', [process.execPath, BIN, 'http-proxy', '--listen', ADDR.node, '--port', '8082'], 'http-proxy listening', { env });
    const hostProxy = `http://${ADDR.node}:8082`;
    const seen = new RegExp(`^${A.replace(/\./g, '\\.')}:80 sees ${egress.replace(/\./g, '\\.')}:\\d+`);
    expect((await get(`http://${A}/`, { proxy: hostProxy })).body).toMatch(seen);
    expect((await get(`http://${A}/`, { proxy: hostProxy, tunnel: true })).body).toMatch(seen);
    // No IPv6 egress source: an allowed IPv6 target is refused, not sent from the node's address.
    expect(await get(`http://[${V6}]/`, { proxy: hostProxy })).toMatchObject({ status: 502, body: `no IPv6 egress source address for ${V6}` });
  });

  it('logs one line per request with decision, rule, upstream, status, bytes', () => {
    const lines = proxy.output().split('\n').filter((l) => l.includes('"msg":"request"') || l.includes('"msg":"tunnel"')).map((l) => JSON.parse(l));
    expect(lines.find((l) => l.target === 'allowed.example:80/' && l.status === 200)).toMatchObject({
      client: ADDR.client, method: 'GET', decision: 'allow', rule: 'allowed.example', upstream: `${A}:80`,
    });
    expect(lines.find((l) => l.method === 'CONNECT' && l.status === 200)).toMatchObject({ decision: 'allow', upstream: `${A}:80` });
    expect(lines.find((l) => l.target === 'blocked.corp.example:80/')).toMatchObject({ decision: 'deny', rule: '!blocked.corp.example', status: 403 });
  });
});
