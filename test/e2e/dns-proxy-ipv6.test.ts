/**
 * DNS proxy, kernel data path over IPv6 (issue 9): an IPv6 IP line and a name
 * with AAAA records only are DNATed for clients that connect over IPv6, and
 * the servers see the IPv6 egress source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR6, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR6.inet as unknown as [string, string];
const DNS6 = '2001:db8:113::53';
const sees = (server: string, port: number) => new RegExp(`^${server}:${port} sees ${ADDR6.source}:\\d+`);

describe('dns-proxy, kernel data path, IPv6', () => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;
  const banner = (port: number) => lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://[${ADDR6.pod}]:${port}`], { input: '', timeoutMs: 8000 });

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ ipv6: true, tcp: [`[${A}]:80`, `[${B}]:80`, `[${A}]:9000`] });
    const add = await lab.exec('inet', ['ip', 'addr', 'add', `${DNS6}/64`, 'dev', 'eth0', 'nodad']);
    expect(add.code, add.stderr).toBe(0);
    dns = await startDnsServer(lab, { address: DNS6, zone: { 'six.example': { AAAA: [A, B], ttl: 2 } } });
    lab.writeResolvConf('pod', DNS6);
    const v6 = { EGRESS_SOURCE: `${ADDR6.source}/64`, EGRESS_GATEWAY: ADDR6.gateway, EGRESS_ROUTER_MODE: 'dns-proxy' };
    const init = await lab.setupRouter(v6);
    expect(init.code, init.stderr).toBe(0);
    // The pod's IPv6 egress takes a second or two to pass traffic after set-up
    // (as dig shows): wait for it, so the proxy's first lookup is not lost to it.
    for (let i = 0; i < 20 && (await lab.exec('pod', ['curl', '-sS', '-m', '1', `telnet://[${A}]:80`], { input: '' })).code !== 0; i++);
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({
        ...v6, EGRESS_DNS_PROXY_MODE: 'kernel', EGRESS_DNS_PROXY_IPV6: '1',
        EGRESS_DNS_PROXY_DESTINATION: `8100 ${A} 9000\n8101 six.example 80`,
      }),
    });
  });
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
  });

  it('forwards an IPv6 IP line from the IPv6 egress source', async () => {
    const r = await banner(8100);
    expect(r.stdout, r.stderr + proxy.output()).toMatch(sees(A, 9000));
  });

  it('forwards a name with AAAA records only, spread over its addresses', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await banner(8101);
      expect(r.stdout, r.stderr + proxy.output()).toMatch(/ sees 2001:db8:12::99:/);
      seen.add(r.stdout.split(' ')[0]!);
    }
    expect(seen).toEqual(new Set([`${A}:80`, `${B}:80`]));
  });
});
