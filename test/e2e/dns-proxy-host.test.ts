/**
 * DNS proxy in host placement (bare metal): the daemon runs in the node's
 * namespace on the user-space path and binds the egress source IP for its
 * outbound connections, so policy routing sends them out macvlan0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const HOST_ENV = {
  EGRESS_PLACEMENT: 'host', EGRESS_CLIENT_INTERFACE: 'cbr0', EGRESS_MACVLAN_MASTER: 'eth0',
  EGRESS_SOURCE: `${ADDR.source}/24`, EGRESS_ROUTER_MODE: 'dns-proxy',
};

describe('dns-proxy, host placement', () => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;
  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ macvlanInPod: false, tcp: [`${A}:80`, `${B}:80`] });
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: { 'two.example': { A: [A, B], ttl: 2 } } });
    lab.writeResolvConf('node', ADDR.dns);
    const init = await lab.setupRouter(HOST_ENV, 'node');
    expect(init.code, init.stderr).toBe(0);
    proxy = await lab.spawnReady('node', [process.execPath, BIN, '--log-format', 'json', 'dns-proxy'], 'dns-proxy ready', {
      env: lab.routerEnv({ ...HOST_ENV, EGRESS_DNS_PROXY_DESTINATION: '18002 two.example 80' }),
    });
  });
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
  });

  it('chose the user-space path and forwards from the egress source IP to both addresses', async () => {
    expect(proxy.output()).toContain('userspace data path');
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:18002`], { input: '' });
      expect(r.stdout).toMatch(new RegExp(`^203\\.0\\.113\\.1[01]:80 sees ${ADDR.source.replace(/\./g, '\\.')}:\\d+`));
      seen.add(r.stdout.split(' ')[0]!);
    }
    expect(seen).toEqual(new Set([`${A}:80`, `${B}:80`]));
  });
});
