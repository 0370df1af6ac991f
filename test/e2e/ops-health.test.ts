/**
 * Health, metrics and shutdown as an operator sees them: /readyz 503 (naming
 * what is missing) then 200; /metrics scraped by a real Prometheus (Debian's
 * package, its own config and storage in a temp dir, in the pod namespace)
 * whose PromQL API returns the connections and the denial the proxy counted;
 * `promtool check metrics` accepts the text; SIGTERM drains: /readyz 503 at
 * once, the listener refuses, an open tunnel finishes, exit 0; past
 * EGRESS_ROUTER_DRAIN_SECONDS what is left is cut, still exit 0.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { client, established, exited, health, sample, sleep, startRouter, until, type Proc } from '../lab/ops.js';
import { ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const dir = mkdtempSync(join(tmpdir(), 'erl-health-'));
let lab: Lab;
let dns: DnsServer;
const procs: Proc[] = [];

beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ http: [`${A}:8000`, `${B}:8000`], echo: [`${A}:7000`] });
  dns = await startDnsServer(lab, { address: ADDR.dns, zone: {} });
  lab.writeResolvConf('pod', ADDR.dns);
  const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
  expect(init.code, init.stderr).toBe(0);
}, 60_000);
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await dns?.stop();
  await lab?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('/readyz', () => {
  it('503 naming the port whose name has not resolved, then 200 once it does', async () => {
    const M = '127.0.0.1:9465';
    const p = await startRouter(lab, 'pod', ['dns-proxy', '--mode', 'userspace'], {
      EGRESS_DNS_PROXY_DESTINATION: '9000 late.example 7000', EGRESS_DNS_PROXY_TTL_MIN: '1', EGRESS_ROUTER_METRICS_ADDRESS: M,
    }, 20_000, 'dns-proxy ready');
    procs.push(p);
    const before = await until(async () => { const r = await health(lab, 'pod', M, '/readyz'); return r.status ? r : undefined; });
    expect(before.status).toBe(503);
    expect(JSON.parse(before.body)).toMatchObject({ ready: false, missing: ['dns-proxy: port 9000: target not resolved yet'] });
    dns.setZone({ 'late.example': { A: [A], ttl: 1 } });
    const after = await until(async () => { const r = await health(lab, 'pod', M, '/readyz'); return r.status === 200 ? r : undefined; }, 10_000);
    expect(JSON.parse(after.body)).toMatchObject({ ready: true, missing: [] });
    expect((await health(lab, 'pod', M, '/healthz')).status).toBe(200);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });
});

describe('http-proxy: Prometheus and drain', () => {
  const M = '127.0.0.1:9466';
  const PROXY = `http://${ADDR.pod}:8080`;
  const get = async (ip: string) => (await lab.exec('client', ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', '-x', PROXY, `http://${ip}:8000/`])).stdout;
  const start = async (drain: string) => {
    const p = await startRouter(lab, 'pod', ['http-proxy'], { EGRESS_HTTP_PROXY_DESTINATION: `${A}\n!${B}`, EGRESS_ROUTER_METRICS_ADDRESS: M, EGRESS_ROUTER_DRAIN_SECONDS: drain });
    procs.push(p);
    return p;
  };

  it('a real Prometheus scrapes /metrics; PromQL returns the connections and the denial; promtool accepts the text', async () => {
    const p = await start('10');
    const cfg = join(dir, 'prometheus.yml');
    writeFileSync(cfg, `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: egress-router\n    static_configs:\n      - targets: ['${M}']\n`);
    const prom = await lab.spawnReady('pod', ['prometheus', `--config.file=${cfg}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, '--web.listen-address=127.0.0.1:9090'],
      'Server is ready to receive web requests', { timeoutMs: 30_000 }) as Proc;
    procs.push(prom);
    expect(await get(A)).toBe('200');
    expect(await get(B)).toBe('403');
    const query = async (q: string) => {
      const r = await lab.exec('pod', ['curl', '-sS', '-m', '3', '--get', '--data-urlencode', `query=${q}`, 'http://127.0.0.1:9090/api/v1/query']);
      const res = (JSON.parse(r.stdout || '{}') as { data?: { result?: { value: [number, string] }[] } }).data?.result ?? [];
      return res.length ? Number(res[0]!.value[1]) : undefined;
    };
    expect(await until(async () => (await query('egress_router_connections_accepted_total{engine="http-proxy"}')) === 2 || undefined, 15_000)).toBe(true);
    expect(await until(async () => (await query('sum(egress_router_policy_decisions_total{engine="http-proxy",action="deny",rule="2"})')) === 1 || undefined, 10_000)).toBe(true);
    expect(await query('egress_router_connections_refused_total{reason="denied"}')).toBe(1);
    expect(await query('egress_router_config_last_reload_successful{engine="http-proxy"}')).toBe(1);
    expect(await query('egress_router_build_info')).toBe(1);
    prom.kill('SIGKILL');

    const text = (await health(lab, 'pod', M, '/metrics')).body;
    expect(sample(text, 'egress_router_client_received_bytes_total', { listener: 'http-proxy:8080' })).toBeGreaterThan(0);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(lint.stdout + lint.stderr).toBe('');
    expect(lint.status).toBe(0);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });

  it('SIGTERM: /readyz 503 at once, new connections refused, an open tunnel finishes, then exit 0', async () => {
    const p = await start('10');
    const long = client(lab, ['hold', `${ADDR.pod}:8080`, '100', '3000', `${A}:7000`]);
    await established(lab, 'pod', `${A}:7000`);
    const t0 = Date.now();
    p.kill('SIGTERM');
    const gone = exited(p);
    const ready = await until(async () => { const r = await health(lab, 'pod', M, '/readyz'); return r.status === 503 ? r : undefined; }, 2000, 20);
    expect(JSON.parse(ready.body).missing).toEqual(['draining (shutting down)']);
    expect(await get(A)).toBe('000');
    const r = await long as { openAtEnd: boolean; sent: number; echoed: number };
    expect(r.openAtEnd).toBe(true);
    expect(r.echoed).toBe(r.sent);
    expect(await gone).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(p.output()).toMatch(/"msg":"draining: listeners closed, open connections may finish"/);
  });

  it('past EGRESS_ROUTER_DRAIN_SECONDS the rest is closed, exit 0', async () => {
    const p = await start('1');
    const long = client(lab, ['hold', `${ADDR.pod}:8080`, '100', '4000', `${A}:7000`]);
    await established(lab, 'pod', `${A}:7000`);
    const t0 = Date.now();
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThan(900);
    expect(took).toBeLessThan(3000);
    expect(p.output()).toContain('drain time over');
    expect((await long as { openAtEnd: boolean }).openAtEnd).toBe(false);
  });
});
