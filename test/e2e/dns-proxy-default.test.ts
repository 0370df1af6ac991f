/**
 * DNS proxy, DEFAULT data path (no EGRESS_DNS_PROXY_MODE, no debug), pod
 * placement: what an operator gets without choosing anything (issue 9).
 *   - a name of two addresses, one of which starts refusing (RST) or
 *     black-holing (SYNs dropped): one second later, 10 of 10 new
 *     connections succeed;
 *   - a changed resolv.conf is followed without a restart.
 * The addresses die by nft rules in the internet namespace, so both are
 * alive (and health-checked as alive) until the moment the test kills one.
 * A second proxy beside it runs where the native fast path is not built
 * (its user-space path on Node sockets, ports +100): the same 10 of 10.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const DNS2 = '203.0.113.54';
const esc = (s: string) => s.replace(/\./g, '\\.');
const sees = (server: string, port: number) => new RegExp(`^${esc(server)}:${port} sees ${esc(ADDR.source)}:\\d+`);
const ADDON = existsSync(new URL('../../native/fastpath/build/Release/fastpath.node', import.meta.url));
// Loading the addon fails in that process, as in a build without it.
const NO_ADDON = `--require ${new URL('../unit/no-fastpath.cjs', import.meta.url).pathname}`;

describe('dns-proxy, default data path', () => {
  let lab: Lab;
  let dns: DnsServer;
  let dns2: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;
  let sockets: Awaited<ReturnType<Lab['spawnReady']>>;

  const banner = (port: number) => lab.exec('client', ['curl', '-sS', '-m', '5', `telnet://${ADDR.pod}:${port}`], { input: '', timeoutMs: 8000 });
  const nft = async (cmd: string) => {
    const r = await lab.exec('inet', ['nft', cmd]);
    expect(r.code, r.stderr).toBe(0);
  };
  /** 10 new connections one after another: which servers answered, how many failed. */
  async function ten(port: number): Promise<{ ok: number; from: Set<string>; errors: string[] }> {
    const from = new Set<string>();
    const errors: string[] = [];
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      const r = await banner(port);
      if (/ sees /.test(r.stdout)) { ok++; from.add(r.stdout.split(' ')[0]!); } else errors.push(r.stderr.trim());
    }
    return { ok, from, errors };
  }

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ tcp: [`${A}:9000`, `${B}:9000`, `${A}:9001`, `${B}:9001`, `${A}:80`, `${C}:80`] });
    await lab.addInetAddress(DNS2);
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: { 'pair.example': { A: [A, B], ttl: 2 }, 'moved.example': { A: [A], ttl: 1 } } });
    dns2 = await startDnsServer(lab, { address: DNS2, zone: { 'pair.example': { A: [A, B], ttl: 2 }, 'moved.example': { A: [C], ttl: 1 } } });
    lab.writeResolvConf('pod', ADDR.dns);
    await nft('add table ip kill; add chain ip kill in { type filter hook input priority 0; }');
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'dns-proxy' });
    expect(init.code, init.stderr).toBe(0);
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({
        EGRESS_DNS_PROXY_DESTINATION: ['8000 pair.example 9000', '8001 pair.example 9001', '8010 moved.example 80', `8020 ${C} 80`].join('\n'),
        EGRESS_DNS_PROXY_TTL_MIN: '1',
      }),
    });
    sockets = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({ EGRESS_DNS_PROXY_DESTINATION: '8100 pair.example 9000\n8101 pair.example 9001', EGRESS_DNS_PROXY_TTL_MIN: '1', NODE_OPTIONS: NO_ADDON }),
    });
  });
  afterAll(async () => {
    await dns?.stop();
    await dns2?.stop();
    await lab?.destroy();
  });

  it('puts name lines in user space and IP lines on the kernel path, and says so', async () => {
    expect(proxy.output()).toContain('(auto data path)');
    expect(proxy.output()).toContain('port 8000 -> pair.example:9000 (userspace)');
    expect(proxy.output()).toContain(`port 8020 -> ${C}:80 (kernel)`);
    const t = await lab.exec('pod', ['nft', 'list', 'table', 'inet', 'egress_router_dns_proxy']);
    expect(t.stdout).toContain('tcp dport 8020');
    expect(t.stdout).not.toContain('tcp dport 8000');
    expect((await banner(8020)).stdout).toMatch(sees(C, 80));
  });

  it('carries the user-space path on the native fast path when it is built, and says so', () => {
    if (ADDON) expect(proxy.output()).toContain('user-space relay: native fast path\n');
    expect(sockets.output()).toContain('user-space relay: node sockets (native fast path not built: Cannot find module \'egress-router-fastpath\')\n');
  });

  it('loses no connection one second after an address starts refusing (RST)', async () => {
    // Both alive: connections go to both.
    for (const p of [8000, 8100]) expect((await ten(p)).from).toEqual(new Set([`${A}:9000`, `${B}:9000`]));
    await nft(`add rule ip kill in ip daddr ${B} tcp dport 9000 reject with tcp reset`);
    await new Promise((r) => setTimeout(r, 1000));
    for (const r of await Promise.all([ten(8000), ten(8100)])) {
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(10);
      expect(r.from).toEqual(new Set([`${A}:9000`]));
    }
  });

  it('loses no connection one second after an address starts dropping SYNs (black hole)', async () => {
    for (const p of [8001, 8101]) expect((await ten(p)).from).toEqual(new Set([`${A}:9001`, `${B}:9001`]));
    await nft(`add rule ip kill in ip daddr ${B} tcp dport 9001 drop`);
    await new Promise((r) => setTimeout(r, 1000));
    for (const r of await Promise.all([ten(8001), ten(8101)])) {
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(10);
      expect(r.from).toEqual(new Set([`${A}:9001`]));
    }
  });

  it('follows a changed resolv.conf without a restart: the next re-resolution asks the new nameserver', async () => {
    expect((await banner(8010)).stdout).toMatch(sees(A, 80));
    // Rewritten in place, as an edit of a bind-mounted file is (the proxy sees it through `ip netns exec`'s bind mount).
    writeFileSync(`/etc/netns/${lab.ns.pod}/resolv.conf`, `nameserver ${DNS2}\noptions timeout:1 attempts:2\n`);
    const end = Date.now() + 8000;
    let last = '';
    while (Date.now() < end) {
      last = (await banner(8010)).stdout;
      if (sees(C, 80).test(last)) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(last).toMatch(sees(C, 80));
    expect(dns2.queries()).toContain('query moved.example A udp');
  });
});
