/**
 * Host placement (systemd on bare metal): the daemon runs in the node's own
 * namespace, creates macvlan0 on the LAN interface, and must leave the
 * host's main routing table exactly as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';

const [A, B] = ADDR.inet;
const HOST_ENV = {
  EGRESS_PLACEMENT: 'host', EGRESS_CLIENT_INTERFACE: 'cbr0', EGRESS_MACVLAN_MASTER: 'eth0',
  EGRESS_SOURCE: `${ADDR.source}/24`, EGRESS_DESTINATION: `80 tcp ${A}\n8080 tcp ${B} 80`,
};

describe('host placement', () => {
  let lab: Lab;
  let mainBefore = '';
  beforeAll(async () => {
    lab = await createLab({ macvlanInPod: false, tcp: [`${A}:80`, `${B}:80`] });
    mainBefore = (await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout;
  });
  afterAll(async () => lab?.destroy());

  it('sets up and leaves the main routing table unchanged', async () => {
    const r = await lab.setupRouter(HOST_ENV, 'node');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout).toBe(mainBefore);
    const rules = (await lab.exec('node', ['ip', 'rule'])).stdout;
    expect(rules).toContain(`6900:\tfrom ${ADDR.source} lookup 230`);
    expect(rules).toContain('6901:\tfrom all fwmark 0xe6 lookup 230');
  });

  it('forwards a client reaching the node out with the source IP', async () => {
    const a = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:80`]);
    expect(a.stdout).toMatch(new RegExp(`^${A}:80 sees ${ADDR.source}:\\d+`));
    const b = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:8080`]);
    expect(b.stdout).toMatch(new RegExp(`^${B}:80 sees ${ADDR.source}:\\d+`));
  });

  it('is not an open router: traffic it did not DNAT is not forwarded', async () => {
    const r = await lab.exec('client', ['curl', '-sS', '-m', '2', `telnet://${A}:80`]);
    expect(r.stdout).toBe('');
    expect(r.code).not.toBe(0);
  });

  it('a restart is idempotent: one rule each, main table still unchanged', async () => {
    expect((await lab.setupRouter(HOST_ENV, 'node')).code).toBe(0);
    const rules = (await lab.exec('node', ['ip', 'rule'])).stdout;
    expect(rules.match(/lookup 230/g)).toHaveLength(2);
    expect((await lab.exec('node', ['ip', 'route', 'show', 'table', 'main'])).stdout).toBe(mainBefore);
    expect((await lab.exec('node', ['nft', 'list', 'chain', 'ip', 'egress_router', 'forward_guard'])).code).toBe(0);
    const a = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.node}:80`]);
    expect(a.stdout).toContain(`sees ${ADDR.source}`);
  });
});
