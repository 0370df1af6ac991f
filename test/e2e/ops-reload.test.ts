/**
 * Live reload under `egress-router daemon` (pod placement), for redirect
 * (legacy) and the HTTP proxy: the destination file changes (a mapping or
 * rule added, another removed) while a long connection keeps echoing through
 * the router; a bad file is rejected with its error line, the running
 * configuration stays, /readyz stays 200 and says so, /metrics too; and 20
 * reloads while a client opens connections in a loop fail none of those to a
 * destination present in both versions.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { client, exited, health, sample, sleep, startRouter, until, type Proc, established } from '../lab/ops.js';
import { ensureBuilt } from '../unit/dist.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const METRICS = `${ADDR.pod}:9464`;
const dir = mkdtempSync(join(tmpdir(), 'erl-reload-'));
let lab: Lab;
let dns: DnsServer;

beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ tcp: [`${A}:80`, `${B}:80`, `${C}:80`], http: [`${A}:8000`, `${B}:8000`, `${C}:8000`], echo: [`${A}:7000`] });
  dns = await startDnsServer(lab, { address: ADDR.dns, zone: { 'echo.example': { A: [A] }, 'b.example': { A: [B] } } });
  lab.writeResolvConf('pod', ADDR.dns);
}, 60_000);
afterAll(async () => { await dns?.stop(); await lab?.destroy(); rmSync(dir, { recursive: true, force: true }); });

const reloaded = (p: Proc, n: number) => until(() => (p.output().match(/"msg":"configuration reloaded"/g) ?? []).length >= n);

describe('legacy (redirect) daemon', () => {
  let p: Proc;
  afterAll(() => { p?.kill('SIGKILL'); });
  const file = join(dir, 'destination');
  const banner = async (port: number) => (await lab.exec('client', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:${port}`])).stdout;

  it('a reload adds 8080 and removes 80 while an echo connection through 7000 continues unbroken', async () => {
    writeFileSync(file, `7000 tcp ${A}\n80 tcp ${A}\n`);
    p = await startRouter(lab, 'pod', ['daemon'], { ...lab.routerEnv({ EGRESS_ROUTER_MODE: 'legacy' }), EGRESS_DESTINATION_FILE: file, EGRESS_ROUTER_METRICS_ADDRESS: METRICS } as Record<string, string>);
    expect(await banner(80)).toContain(`${A}:80 sees ${ADDR.source}`);
    const long = client(lab, ['hold', `${ADDR.pod}:7000`, '100', '4000']);
    await established(lab, 'client', `${ADDR.pod}:7000`);
    writeFileSync(file, `7000 tcp ${A}\n8080 tcp ${B} 80\n`);
    await reloaded(p, 1);
    expect(await banner(8080)).toContain(`${B}:80 sees ${ADDR.source}`);
    expect(await banner(80)).toBe('');
    const r = await long as { openAtEnd: boolean; sent: number; echoed: number; greeting: string };
    expect(r.greeting).toContain(`${A}:7000 sees ${ADDR.source}`);
    expect(r.openAtEnd).toBe(true);
    expect(r.sent).toBeGreaterThan(20);
    expect(r.echoed).toBe(r.sent);
  });

  it('an invalid file: error line logged, ruleset kept, /readyz 200 naming the error, last_reload_successful 0', async () => {
    writeFileSync(file, '8080 tcp not-an-ip\n');
    await until(() => p.output().includes('configuration not reloaded'));
    expect(p.output()).toContain("EGRESS_DESTINATION value '8080 tcp not-an-ip' is invalid");
    expect(await banner(8080)).toContain(`${B}:80 sees`);
    const ready = await health(lab, 'pod', METRICS, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body).config.redirect).toMatchObject({ generation: 2, lastReloadSuccessful: false, lastReloadError: "EGRESS_DESTINATION value '8080 tcp not-an-ip' is invalid" });
    const m = (await health(lab, 'pod', METRICS, '/metrics')).body;
    expect(sample(m, 'egress_router_config_last_reload_successful', { engine: 'redirect' })).toBe(0);
    expect(sample(m, 'egress_router_config_reloads_total', { engine: 'redirect', result: 'failure' })).toBe(1);
    expect(sample(m, 'egress_router_config_reloads_total', { engine: 'redirect', result: 'success' })).toBe(1);
    expect(sample(m, 'egress_router_config_generation', { engine: 'redirect' })).toBe(2);
  });

  it('20 reloads (SIGHUP) while a client connects in a loop to a port in both versions: no failure', async () => {
    const loop = client(lab, ['loop', 'tcp', `${ADDR.pod}:80`, '5000']);
    for (let i = 0; i < 20; i++) {
      writeFileSync(file, i % 2 ? `80 tcp ${A}\n8080 tcp ${B} 80\n` : `80 tcp ${A}\n8080 tcp ${C} 80\n443 tcp ${C} 80\n`);
      p.kill('SIGHUP');
      await sleep(200);
    }
    const r = await loop as { ok: number; failed: number; errors: string[] };
    await reloaded(p, 21);
    expect(r.failed, JSON.stringify(r.errors)).toBe(0);
    expect(r.ok).toBeGreaterThan(20);
    expect(await banner(8080)).toContain(`${B}:80 sees`);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
    // Redirect rules stay for the pod's life, as in the image.
    expect((await lab.exec('pod', ['nft', 'list', 'table', 'ip', 'egress_router'])).stdout).toContain(`dnat to ${B}:80`);
  });
});

describe('http-proxy daemon', () => {
  let p: Proc;
  // The redirect table stays after the legacy daemon (as in the image): it would capture port 8080.
  beforeAll(async () => { await lab.exec('pod', ['nft', 'delete', 'table', 'ip', 'egress_router']); });
  afterAll(() => { p?.kill('SIGKILL'); });
  const file = join(dir, 'rules');
  const PROXY = `http://${ADDR.pod}:8080`;
  const get = async (ip: string) => (await lab.exec('client', ['curl', '-sS', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', '-x', PROXY, `http://${ip}:8000/`])).stdout;

  it('a reload allows C and removes B while a CONNECT tunnel keeps echoing', async () => {
    writeFileSync(file, `${A}\n${B}\n`);
    p = await startRouter(lab, 'pod', ['daemon'], { ...lab.routerEnv({ EGRESS_ROUTER_MODE: 'http-proxy' }), EGRESS_HTTP_PROXY_DESTINATION_FILE: file, EGRESS_ROUTER_METRICS_ADDRESS: METRICS } as Record<string, string>);
    expect(await get(B)).toBe('200');
    expect(await get(C)).toBe('403');
    const long = client(lab, ['hold', `${ADDR.pod}:8080`, '100', '4000', `${A}:7000`]);
    await established(lab, 'pod', `${A}:7000`);
    writeFileSync(file, `${A}\n${C}\n`);
    await reloaded(p, 1);
    expect(await get(C)).toBe('200');
    expect(await get(B)).toBe('403');
    const r = await long as { openAtEnd: boolean; sent: number; echoed: number; greeting: string };
    expect(r.greeting).toContain(`${A}:7000 sees ${ADDR.source}`);
    expect(r.openAtEnd).toBe(true);
    expect(r.echoed).toBe(r.sent);
  });

  it('an invalid file keeps the running rules; /readyz 200 names the error', async () => {
    writeFileSync(file, `*\n${A}\n`);
    await until(() => p.output().includes('configuration not reloaded'));
    expect(p.output()).toContain('Wildcard must be last rule, if present');
    expect(await get(C)).toBe('200');
    expect(await get(B)).toBe('403');
    const ready = await health(lab, 'pod', METRICS, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body).config['http-proxy']).toMatchObject({ lastReloadSuccessful: false, lastReloadError: 'Wildcard must be last rule, if present' });
  });

  it('20 reloads while a client opens connections in a loop to A (allowed in both versions): no failure', async () => {
    const loop = client(lab, ['loop', 'http', `${ADDR.pod}:8080`, '5000', `http://${A}:8000/`]);
    for (let i = 0; i < 20; i++) {
      writeFileSync(file, i % 2 ? `${A}\n${B}\n` : `!${C}\n${A}/32\n`);
      p.kill('SIGHUP');
      await sleep(200);
    }
    const r = await loop as { ok: number; failed: number; errors: string[] };
    await reloaded(p, 21);
    expect(r.failed, JSON.stringify(r.errors)).toBe(0);
    expect(r.ok).toBeGreaterThan(20);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });
});

describe('dns-proxy daemon (auto: names in user space, IPs on the kernel path)', () => {
  let p: Proc;
  afterAll(() => { p?.kill('SIGKILL'); });
  const file = join(dir, 'forwards');
  const banner = async (port: number) => (await lab.exec('client', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:${port}`])).stdout;
  type Hold = { openAtEnd: boolean; sent: number; echoed: number; greeting: string };

  it('a reload adds and removes lines on both paths while connections through both keep echoing', async () => {
    writeFileSync(file, `7100 echo.example 7000\n7200 ${A} 7000\n9080 ${A} 80\n`);
    p = await startRouter(lab, 'pod', ['daemon'], { ...lab.routerEnv({ EGRESS_ROUTER_MODE: 'dns-proxy' }), EGRESS_DNS_PROXY_DESTINATION_FILE: file, EGRESS_ROUTER_METRICS_ADDRESS: METRICS } as Record<string, string>);
    expect(await banner(9080)).toContain(`${A}:80 sees ${ADDR.source}`);
    const user = client(lab, ['hold', `${ADDR.pod}:7100`, '100', '4000']);
    const kern = client(lab, ['hold', `${ADDR.pod}:7200`, '100', '4000']);
    await established(lab, 'client', `${ADDR.pod}:7100`, 0);
    await established(lab, 'client', `${ADDR.pod}:7200`);
    writeFileSync(file, `7100 echo.example 7000\n7200 ${A} 7000\n9081 b.example 80\n9082 ${B} 80\n`);
    await reloaded(p, 1);
    expect(await banner(9081)).toContain(`${B}:80 sees ${ADDR.source}`);
    expect(await banner(9082)).toContain(`${B}:80 sees ${ADDR.source}`);
    expect(await banner(9080)).toBe('');
    for (const r of [await user as Hold, await kern as Hold]) {
      expect(r.greeting).toContain(`${A}:7000 sees ${ADDR.source}`);
      expect(r.openAtEnd).toBe(true);
      expect(r.echoed).toBe(r.sent);
    }
  });

  it('a removed port stops accepting while its open connection drains; an invalid file keeps the running lines', async () => {
    const held = client(lab, ['hold', `${ADDR.pod}:7100`, '100', '3000']);
    await established(lab, 'client', `${ADDR.pod}:7100`);
    writeFileSync(file, `7200 ${A} 7000\n9081 b.example 80\n9082 ${B} 80\n`);
    await reloaded(p, 2);
    expect((await lab.exec('client', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:7100`])).stderr).toMatch(/refused|Failed to connect/i);
    const r = await held as Hold;
    expect(r.openAtEnd).toBe(true);
    expect(r.echoed).toBe(r.sent);
    writeFileSync(file, `9081 b.example 99999\n`);
    await until(() => p.output().includes('configuration not reloaded'));
    expect(p.output()).toContain('Invalid port: 99999, must be in the range 1 to 65535');
    expect(await banner(9081)).toContain(`${B}:80 sees`);
    const m = (await health(lab, 'pod', METRICS, '/metrics')).body;
    expect(sample(m, 'egress_router_config_last_reload_successful', { engine: 'dns-proxy' })).toBe(0);
    expect(sample(m, 'egress_router_dns_addresses', { engine: 'dns-proxy', name: 'b.example' })).toBe(1);
    expect(sample(m, 'egress_router_connections_accepted_total', { engine: 'dns-proxy', listener: 'dns-proxy:7100' })).toBe(2);
  });

  it('20 reloads while a client connects in a loop to a port in both versions: no failure', async () => {
    const loop = client(lab, ['loop', 'tcp', `${ADDR.pod}:9081`, '5000']);
    for (let i = 0; i < 20; i++) {
      writeFileSync(file, i % 2 ? `9081 b.example 80\n9082 ${B} 80\n` : `9081 b.example 80\n9083 ${C} 80\n9084 b.example 80\n`);
      p.kill('SIGHUP');
      await sleep(200);
    }
    const r = await loop as { ok: number; failed: number; errors: string[] };
    await reloaded(p, 22);
    expect(r.failed, JSON.stringify(r.errors)).toBe(0);
    expect(r.ok).toBeGreaterThan(20);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });
});
