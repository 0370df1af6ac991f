/**
 * Kernel path (explicit opt-in): an address that refuses a connection (RST)
 * leaves the DNAT set as soon as one connection is refused, not at its next
 * health check. A DNAT cannot retry that first connection elsewhere (the
 * default path, user space for names, does: dns-proxy-default.test.ts); the
 * ones after it must not meet the dead address. Health checks are 30 s apart
 * here, so they cannot be what learns it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR.inet as unknown as [string, string];

describe('dns-proxy, kernel data path, a refusing address', () => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;
  const banner = () => lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:8000`], { input: '', timeoutMs: 8000 });
  async function ten(): Promise<{ ok: number; from: Set<string> }> {
    const from = new Set<string>();
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      const r = await banner();
      if (/ sees /.test(r.stdout)) { ok++; from.add(r.stdout.split(' ')[0]!); }
    }
    return { ok, from };
  }

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ tcp: [`${A}:9000`, `${B}:9000`] });
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: { 'pair.example': { A: [A, B], ttl: 60 } } });
    lab.writeResolvConf('pod', ADDR.dns);
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'dns-proxy' });
    expect(init.code, init.stderr).toBe(0);
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({ EGRESS_DNS_PROXY_MODE: 'kernel', EGRESS_DNS_PROXY_HEALTH_INTERVAL: '30', EGRESS_DNS_PROXY_DESTINATION: '8000 pair.example 9000' }),
    });
  });
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
  });

  it('drops the address from the set at its first refusal', async () => {
    expect((await ten()).from).toEqual(new Set([`${A}:9000`, `${B}:9000`]));
    const kill = await lab.exec('inet', ['nft', `add table ip kill; add chain ip kill in { type filter hook input priority 0; }; add rule ip kill in ip daddr ${B} tcp dport 9000 reject with tcp reset`]);
    expect(kill.code, kill.stderr).toBe(0);
    // Connect until one meets the dead address (round robin: within a few).
    let lost = 0;
    for (let i = 0; i < 10 && lost === 0; i++) if (!/ sees /.test((await banner()).stdout)) lost++;
    expect(lost).toBe(1);
    // Learnt from that refusal (health checks are 30 s apart), not from a
    // timer: wait for the log line rather than racing the event under load.
    const deadline = Date.now() + 3000;
    while (!/"address":"203\.0\.113\.11:9000".*refused/.test(proxy.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const next = await ten();
    expect(next.ok).toBe(10);
    expect(next.from).toEqual(new Set([`${A}:9000`]));
    expect(proxy.output()).toMatch(/"address":"203\.0\.113\.11:9000".*refused/);
  });
});
