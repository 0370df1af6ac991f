/**
 * CONNECT on both accept paths: the native fast path (EGRESS_FASTPATH=1,
 * tunnels connected and relayed in C) and net.Socket (EGRESS_FASTPATH=0).
 * The same lab, two proxies with the same configuration, the same
 * expectations: what a raw client receives byte for byte, what the servers
 * see, and the log lines (tunnel, error and debug). The other HTTP proxy
 * tests run on the default path, which is the fast path when the addon is
 * built (asserted in http-proxy.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';
import { client, exited, until } from '../lab/ops.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const REFUSING = '203.0.113.13';
const CLIENT = join(ROOT, 'test/lab/proxy-client.mjs');
const FRAMING = join(ROOT, 'test/lab/framing.mjs');
const POLICY = ['!blocked.example', '*.corp.example', 'allowed.example', `${A}/31`].join('\n');
const ZONE = {
  'allowed.example': { A: [A] },
  'blocked.example': { A: [A] },
  'other.example': { A: [ADDR.fallback] },
  // The first address refuses (assigned, no server), the second serves.
  'retry.corp.example': { A: [REFUSING, B] },
};
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Proc = Awaited<ReturnType<Lab['spawnReady']>>;
type Json = Record<string, unknown>;
const MODES = [['1', 'fastpath', 8084], ['0', 'net.Socket', 8085]] as const;
/** Each proxy's /metrics, in the pod namespace. */
const METRICS = { 8084: '127.0.0.1:9484', 8085: '127.0.0.1:9485' } as const;

describe('http-proxy CONNECT on both accept paths', () => {
  let lab: Lab;
  let dns: DnsServer;
  const proxies = new Map<string, Proc>();

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ echo: [`${A}:7000`, `${B}:7000`], http: [`${B}:80`] });
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
    await lab.addInetAddress(REFUSING);
    lab.writeResolvConf('pod', ADDR.dns);
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(init.code, init.stderr).toBe(0);
    // A target that never answers a SYN: the 504 case.
    await lab.exec('inet', ['nft', 'add table inet erh; add chain inet erh in { type filter hook input priority 0; }; add rule inet erh in tcp dport 9999 drop']);
    for (const [fastpath, , port] of MODES) {
      const env = {
        ...process.env, EGRESS_FASTPATH: fastpath, EGRESS_HTTP_PROXY_DESTINATION: POLICY, EGRESS_HTTP_PROXY_DEBUG: '1',
        EGRESS_HTTP_PROXY_CONNECT_PORTS: '7000 81 9999', EGRESS_HTTP_PROXY_CLIENTS: `${ADDR.client}/32`, EGRESS_ROUTER_METRICS_ADDRESS: METRICS[port],
      };
      proxies.set(fastpath, await lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy', '--port', String(port), '--header-timeout', '1500', '--connect-timeout', '1500'], 'http-proxy listening', { env }));
    }
  }, 90_000);
  afterAll(async () => { await dns?.stop(); await lab?.destroy(); });

  describe.each(MODES)('EGRESS_FASTPATH=%s (%s)', (fastpath, path, port) => {
    const proxy = `${ADDR.pod}:${port}`;
    const lines = (): Json[] => proxies.get(fastpath)!.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json);
    /** The first log line matching, once there (lines leave at the end of the proxy's turn: bounded wait). */
    async function line(match: (l: Json) => boolean): Promise<Json | undefined> {
      for (const end = Date.now() + 3000; ; await sleep(50)) {
        const l = lines().find(match);
        if (l || Date.now() > end) return l;
      }
    }
    /** Raw bytes to the proxy from the client namespace: the whole reply, and whether the proxy closed. */
    async function raw(request: string, from: 'client' | 'pod' = 'client'): Promise<{ reply: string; closed: boolean }> {
      const r = await lab.exec(from, [process.execPath, FRAMING, 'raw', proxy, Buffer.from(request, 'latin1').toString('base64'), '4000'], { timeoutMs: 15_000 });
      expect(r.stdout, r.stderr).toMatch(/^\{/);
      return JSON.parse(r.stdout) as { reply: string; closed: boolean };
    }
    const connect = (target: string) => raw(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const closing = (status: string, text: string) =>
      `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;

    it(`accepts on ${path} (the start-up line says so)`, async () => {
      expect(await line((l) => l.msg === 'http-proxy listening')).toMatchObject({ port, accept: path });
    });

    it('an allowed CONNECT relays both ways from the egress source, a half-close carries the reply; the line counts payload bytes only', async () => {
      const r = await lab.exec('client', [process.execPath, CLIENT, 'halfclose', proxy, 'allowed.example:7000'], { timeoutMs: 15_000 });
      const head = 'HTTP/1.1 200 Connection established\r\n\r\n';
      expect(r.stdout).toMatch(new RegExp(`^${esc(head)}${esc(A)}:7000 sees ${esc(ADDR.source)}:\\d+\\nping\\n$`));
      const l = await line((x) => x.msg === 'tunnel' && x.target === 'allowed.example:7000');
      expect(l).toMatchObject({ client: ADDR.client, method: 'CONNECT', decision: 'allow', rule: 'allowed.example', upstream: `${A}:7000`, status: 200, bytesIn: 'ping\n'.length, bytesOut: r.stdout.length - head.length });
    });

    it('refusals and failed connects: the same replies, then closed; each with its line', async () => {
      const cases: Array<[string, string, string | RegExp, string]> = [
        ['blocked.example:7000', '403 Forbidden', 'denied by rule 1: !blocked.example\n', 'deny'],
        ['other.example:7000', '403 Forbidden', 'denied: no rule allowed it\n', 'deny'],
        ['no-port', '400 Bad Request', 'bad CONNECT target, expected host:port\n', 'error'],
        [`${A}:8443`, '403 Forbidden', 'denied: CONNECT to port 8443 is not allowed\n', 'port'],
        [`${A}:81`, '502 Bad Gateway', `connect to ${A}:81 failed: ECONNREFUSED\n`, 'allow'],
        [`${A}:9999`, '504 Gateway Timeout', `connect to ${A}:9999 timed out\n`, 'allow'],
        ['nxdomain.corp.example:7000', '502 Bad Gateway', /does not resolve/, 'error'],
      ];
      const t0 = Date.now();
      const replies = await Promise.all(cases.map(([target]) => connect(target)));
      // The 504 after the 1.5 s connect timeout, not much later.
      expect(Date.now() - t0).toBeLessThan(4500);
      for (const [i, [target, status, text, decision]] of cases.entries()) {
        const r = replies[i]!;
        expect(r.closed, target).toBe(true);
        if (typeof text === 'string') expect(r.reply, target).toBe(closing(status, text));
        else expect(r.reply, target).toMatch(new RegExp(`^HTTP/1.1 ${status}\\r\\n[^]*\\r\\n\\r\\n[^]*${text.source}`));
        const l = await line((x) => x.msg === 'tunnel' && x.target === target);
        expect(l, target).toMatchObject({ method: 'CONNECT', decision, status: Number(status.slice(0, 3)), bytesIn: 0, bytesOut: 0 });
      }
    });

    it('a bad head gets the front\'s 400 and an error line; an unfinished one 408 at the header deadline', async () => {
      const [bad, slow] = await Promise.all([raw('CONNECT allowed.example:7000 HTTP/1.1\nHost: x\n\n'), raw('CONNECT allowed.example:7000 HTTP/1.1\r\nHost: x\r\n')]);
      expect(bad).toEqual({ reply: closing('400 Bad Request', 'bare LF in request head\n'), closed: true });
      expect(slow).toEqual({ reply: closing('408 Request Timeout', 'request headers not received in time\n'), closed: true });
      expect(await line((x) => x.msg === 'request' && x.reason === 'bare LF in request head')).toMatchObject({ client: ADDR.client, method: '-', decision: 'error', status: 400 });
      expect(await line((x) => x.msg === 'request' && x.status === 408)).toMatchObject({ method: '-', decision: 'error', reason: 'request headers not received in time' });
    });

    it('a refused connect moves on to the next allowed address: a debug line for the failed one, the tunnel line names the one that answered', async () => {
      const r = await lab.exec('client', [process.execPath, CLIENT, 'halfclose', proxy, 'retry.corp.example:7000'], { timeoutMs: 15_000 });
      expect(r.stdout).toMatch(new RegExp(`\\r\\n\\r\\n${esc(B)}:7000 sees ${esc(ADDR.source)}:\\d+\\nping\\n$`));
      expect(await line((x) => x.msg === 'connect failed' && x.target === 'retry.corp.example:7000')).toMatchObject({ upstream: `${REFUSING}:7000`, error: 'ECONNREFUSED' });
      expect(await line((x) => x.msg === 'tunnel' && x.target === 'retry.corp.example:7000')).toMatchObject({ upstream: `${B}:7000`, status: 200, rule: '*.corp.example' });
    });

    it('499 when the client resets its connection while the tunnel connects', async () => {
      const r = await lab.exec('client', [process.execPath, CLIENT, 'reset', proxy, `${B}:9999`, '300'], { timeoutMs: 15_000 });
      expect(JSON.parse(r.stdout)).toEqual({ reply: '' });
      expect(await line((x) => x.msg === 'tunnel' && x.target === `${B}:9999`)).toMatchObject({ decision: 'allow', upstream: `${B}:9999`, status: 499, bytesIn: 0, bytesOut: 0 });
    });

    it('a client not on the allow-list gets 403 at accept', async () => {
      // The pod itself is not on the client list.
      expect(await raw(`CONNECT ${A}:7000 HTTP/1.1\r\n\r\n`, 'pod')).toEqual({ reply: closing('403 Forbidden', 'denied: client address not allowed\n'), closed: true });
    });
  });

  // Both proxies were sent the same connections above (the describe.each
  // blocks run first), so every counter must agree: accepted, refused by
  // reason, bytes each way, decisions per rule, and nothing left open.
  it('both paths count the same (metrics of the two proxies, once their connections have ended)', async () => {
    const counters = async (port: 8084 | 8085) => {
      const r = await lab.exec('pod', ['curl', '-sS', '-m', '5', `http://${METRICS[port]}/metrics`], { timeoutMs: 10_000 });
      return r.stdout.split('\n').filter((l) => /^egress_router_(connections|client|policy)_/.test(l)).map((l) => l.replace(`http-proxy:${port}`, 'http-proxy:N')).sort();
    };
    let fast: string[] = [], sockets: string[] = [];
    for (const end = Date.now() + 8000; Date.now() < end; await sleep(200)) {
      [fast, sockets] = await Promise.all([counters(8084), counters(8085)]);
      if (fast.join() === sockets.join() && fast.some((l) => l.startsWith('egress_router_connections_active{') && l.endsWith(' 0'))) break;
    }
    expect(fast.find((l) => l.startsWith('egress_router_connections_accepted_total{'))).toMatch(/ 1[0-9]$/);
    expect(fast).toContain('egress_router_connections_active{engine="http-proxy",listener="http-proxy:N"} 0');
    expect(fast).toEqual(sockets);
  });

  // Last: it stops both proxies.
  it('SIGTERM drains on both paths: new connections refused, a byte-less and an idle keep-alive connection closed, a busy tunnel finishes, exit 0', async () => {
    const raw = (port: number, request: string) => lab.exec('client', [process.execPath, FRAMING, 'raw', `${ADDR.pod}:${port}`, Buffer.from(request, 'latin1').toString('base64'), '6000'], { timeoutMs: 15_000 })
      // When the close was seen: the checks below run one proxy after the other.
      .then((r) => ({ ...(JSON.parse(r.stdout) as { reply: string; closed: boolean }), at: Date.now() }));
    const held = MODES.map(([, , port]) => ({
      tunnel: client<{ openAtEnd: boolean; sent: number; echoed: number }>(lab, ['hold', `${ADDR.pod}:${port}`, '100', '2500', `${A}:7000`]),
      silent: raw(port, ''),
      keepAlive: raw(port, `GET http://${B}/ HTTP/1.1\r\nHost: ${B}\r\n\r\n`),
    }));
    // Three connections to each proxy, established, and the keep-alive one answered.
    for (const [, , port] of MODES) {
      await until(async () => (await lab.exec('client', ['ss', '-Htn', 'state', 'established', 'dst', `${ADDR.pod}:${port}`])).stdout.trim().split('\n').length >= 3 || undefined, 10_000);
    }
    await sleep(500);
    const t0 = Date.now();
    const gone = MODES.map(([fastpath]) => { const p = proxies.get(fastpath)!; p.kill('SIGTERM'); return exited(p); });
    for (const [i, [, path, port]] of MODES.entries()) {
      const h = held[i]!;
      const silent = await h.silent;
      expect(silent, path).toMatchObject({ reply: '', closed: true });
      const ka = await h.keepAlive;
      expect(ka.reply, path).toMatch(/^HTTP\/1.1 200 /);
      expect(ka.closed, path).toBe(true);
      expect(Math.max(silent.at, ka.at) - t0, `${path}: idle connections closed at once`).toBeLessThan(2000);
      const refused = await lab.exec('client', ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', '-x', `http://${ADDR.pod}:${port}`, `http://${B}/`]);
      expect(refused.stdout, path).toBe('000');
      const t = await h.tunnel;
      expect(t, path).toMatchObject({ openAtEnd: true });
      expect(t.echoed, path).toBe(t.sent);
      expect(await gone[i], path).toEqual({ code: 0, signal: null });
    }
  });
});
