/**
 * `egress-router daemon` in host placement (what the systemd unit runs): one
 * process in the node's own namespace creates macvlan0 on the LAN interface,
 * sets up policy routing and runs its mode's engine; clients reaching the node
 * leave with the egress source IP; SIGTERM exits 0. One lab, the modes in turn.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exited, health, startRouter } from '../lab/ops.js';
import { deny, allow, policyYaml } from '../lab/firewall.js';
import { ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const HOST = { EGRESS_PLACEMENT: 'host', EGRESS_CLIENT_INTERFACE: 'cbr0', EGRESS_MACVLAN_MASTER: 'eth0', EGRESS_SOURCE: `${ADDR.source}/24`, EGRESS_GATEWAY: ADDR.gateway };
const M = `${ADDR.node}:9464`;
let lab: Lab;
let mainBefore = '';
beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ macvlanInPod: false, tcp: [`${A}:80`, `${B}:80`], http: [`${A}:8000`], echo: [`${B}:7000`] });
  mainBefore = (await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout;
}, 60_000);
const dir = mkdtempSync(join(tmpdir(), 'erl-opshost-'));
afterAll(async () => { await lab?.destroy(); rmSync(dir, { recursive: true, force: true }); });

const daemon = (env: Record<string, string>) => startRouter(lab, 'node', ['daemon'], { ...HOST, EGRESS_ROUTER_METRICS_ADDRESS: M, ...env });

describe('daemon, host placement', () => {
  it('legacy: redirect from the node, main table untouched, ready, exit 0 on SIGTERM', async () => {
    const p = await daemon({ EGRESS_ROUTER_MODE: 'legacy', EGRESS_DESTINATION: `80 tcp ${A}` });
    const r = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:80`]);
    expect(r.stdout).toMatch(new RegExp(`^${A}:80 sees ${ADDR.source}:\\d+`));
    expect((await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout).toBe(mainBefore);
    expect((await health(lab, 'node', M, '/readyz')).status).toBe(200);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
    await lab.exec('node', ['nft', 'delete', 'table', 'ip', 'egress_router']);
  });

  it('http-proxy: the proxy on the node binds the egress source; exit 0 on SIGTERM', async () => {
    const p = await daemon({ EGRESS_ROUTER_MODE: 'http-proxy', EGRESS_HTTP_PROXY_DESTINATION: A });
    const r = await lab.exec('client', ['curl', '-sS', '-m', '3', '-x', `http://${ADDR.node}:8080`, `http://${A}:8000/`]);
    expect(r.stdout).toMatch(new RegExp(`^${A}:8000 sees ${ADDR.source}:\\d+`));
    expect((await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout).toBe(mainBefore);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });

  it('dns-proxy: a port forwarded from the node leaves with the egress source; exit 0 on SIGTERM', async () => {
    const p = await daemon({ EGRESS_ROUTER_MODE: 'dns-proxy', EGRESS_DNS_PROXY_DESTINATION: `9100 ${B} 7000` });
    const r = await lab.exec('client', ['curl', '-sS', '-m', '2', `telnet://${ADDR.node}:9100`]);
    expect(r.stdout).toMatch(new RegExp(`^${B}:7000 sees ${ADDR.source}:\\d+`));
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });

  it('legacy with the firewall in the same process: the policy refuses A, B is served; both engines ready', async () => {
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, policyYaml([deny(`${A}/32`), allow('0.0.0.0/0')]));
    const p = await daemon({
      EGRESS_ROUTER_MODE: 'legacy', EGRESS_DESTINATION: `80 tcp ${A}\n8080 tcp ${B} 80`,
      EGRESS_FIREWALL_POLICY: policy, EGRESS_FIREWALL_SOURCES: `${ADDR.client}/32`, EGRESS_FIREWALL_INTERFACE: 'macvlan0', EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14',
    });
    expect((await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:80`])).stdout).toBe('');
    expect((await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:8080`])).stdout).toMatch(new RegExp(`^${B}:80 sees ${ADDR.source}:\\d+`));
    const ready = await health(lab, 'node', M, '/readyz');
    expect(ready.status).toBe(200);
    expect(Object.keys(JSON.parse(ready.body).config)).toEqual(['redirect', 'firewall']);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });
});
