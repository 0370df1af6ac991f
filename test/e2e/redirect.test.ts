/**
 * Redirect mode in the lab, asserted from the client's side and in the
 * servers' own words (which source IP they see).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';

const [A, B, C] = ADDR.inet;
const MAPPING = [`80 tcp ${A}`, `8080 tcp ${B} 80`, `5353 udp ${C} 53`].join('\n');
const SERVERS = { tcp: [`${A}:80`, `${B}:80`, `${ADDR.fallback}:2222`], udp: [`${C}:53`] };

async function tcp(lab: Lab, host: string, port: number) {
  // curl's telnet:// reads the server's banner line; -m bounds it.
  return lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${host}:${port}`], { input: '', timeoutMs: 8000 });
}

async function udp(lab: Lab, host: string, port: number) {
  return lab.exec('client', ['socat', '-T', '2', '-', `UDP:${host}:${port}`], { input: 'hi\n', timeoutMs: 8000 });
}

describe('redirect mode, pod placement', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab(SERVERS);
  });
  afterAll(async () => lab?.destroy());

  it('sets up as an init container and exits 0', async () => {
    const r = await lab.setupRouter({ EGRESS_DESTINATION: MAPPING });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const steps = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(steps.find((s) => s.step === 'ruleset')).toMatchObject({ rules: 7, table: 'ip egress_router' });
    expect(steps.find((s) => s.step === 'address')).toMatchObject({ interface: 'macvlan0', address: `${ADDR.source}/32` });
  });

  it('each mapping reaches its server and the server sees the egress source IP', async () => {
    const a = await tcp(lab, ADDR.pod, 80);
    expect(a.stdout).toMatch(new RegExp(`^${A}:80 sees ${ADDR.source}:\\d+`));
    const b = await tcp(lab, ADDR.pod, 8080);
    expect(b.stdout).toMatch(new RegExp(`^${B}:80 sees ${ADDR.source}:\\d+`));
  });

  it('forwards UDP', async () => {
    const r = await udp(lab, ADDR.pod, 5353);
    expect(r.stdout).toMatch(new RegExp(`^${C}:53 sees ${ADDR.source}:\\d+`));
  });

  it('refuses unmapped ports at once (TCP RST, ICMP for UDP)', async () => {
    const t0 = Date.now();
    const r = await tcp(lab, ADDR.pod, 2222);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/refused|couldn't connect/i);
    expect(Date.now() - t0).toBeLessThan(2000);
    const u = await udp(lab, ADDR.pod, 9999);
    expect(u.stderr).toMatch(/refused/i);
  });

  it('running set-up again is harmless and leaves one copy of everything', async () => {
    const r = await lab.setupRouter({ EGRESS_DESTINATION: MAPPING });
    expect(r.code).toBe(0);
    const addrs = await lab.exec('pod', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'macvlan0']);
    expect(addrs.stdout.trim().split('\n')).toHaveLength(1);
    const routes = await lab.exec('pod', ['ip', 'route', 'show', 'default']);
    expect(routes.stdout.trim()).toBe(`default via ${ADDR.gateway} dev macvlan0 proto static`);
    const tables = await lab.exec('pod', ['nft', 'list', 'tables']);
    expect(tables.stdout.match(/egress_router/g)).toHaveLength(1);
    expect((await tcp(lab, ADDR.pod, 80)).stdout).toContain(`sees ${ADDR.source}`);
  });

  it('keeps the cluster route on eth0', async () => {
    const r = await lab.exec('pod', ['ip', 'route', 'show', 'dev', 'eth0']);
    expect(r.stdout).toContain('10.128.0.0/24');
  });

  it('the gateway learns the macvlan MAC for the source IP', async () => {
    const mac = (await lab.exec('pod', ['cat', '/sys/class/net/macvlan0/address'])).stdout.trim();
    const n = await lab.exec('gw', ['ip', 'neigh', 'show', ADDR.source, 'dev', 'br0']);
    expect(n.stdout).toContain(mac);
  });
});

describe('redirect mode with a fallback and a foreign table', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab(SERVERS);
  });
  afterAll(async () => lab?.destroy());

  it('sends every unmapped port to the fallback and leaves a foreign table alone', async () => {
    for (const cmd of ['add table ip nat', 'add chain ip nat PREROUTING { type nat hook prerouting priority dstnat; }', 'add rule ip nat PREROUTING tcp dport 7777 counter accept']) {
      expect((await lab.exec('pod', ['nft', cmd])).code).toBe(0);
    }
    const before = (await lab.exec('pod', ['nft', 'list', 'table', 'ip', 'nat'])).stdout;
    const r = await lab.setupRouter({ EGRESS_DESTINATION: `80 tcp ${A}\n${ADDR.fallback}` });
    expect(r.code).toBe(0);
    expect((await tcp(lab, ADDR.pod, 2222)).stdout).toMatch(new RegExp(`^${ADDR.fallback}:2222 sees ${ADDR.source}:`));
    expect((await tcp(lab, ADDR.pod, 80)).stdout).toMatch(new RegExp(`^${A}:80 sees ${ADDR.source}:`));
    expect((await lab.exec('pod', ['nft', 'list', 'table', 'ip', 'nat'])).stdout).toBe(before);
  });

  it('the gateway points the source IP at the macvlan MAC even when it held another MAC before', async () => {
    await lab.exec('gw', ['ip', 'neigh', 'replace', ADDR.source, 'lladdr', '02:de:ad:be:ef:01', 'dev', 'br0', 'nud', 'stale']);
    await new Promise((r) => setTimeout(r, 1100)); // past the neighbour locktime
    const r = await lab.setupRouter({ EGRESS_DESTINATION: `80 tcp ${A}\n${ADDR.fallback}` });
    expect(r.code).toBe(0);
    const mac = (await lab.exec('pod', ['cat', '/sys/class/net/macvlan0/address'])).stdout.trim();
    const n = await lab.exec('gw', ['ip', 'neigh', 'show', ADDR.source, 'dev', 'br0']);
    expect(n.stdout).toContain(mac);
    expect(n.stdout).not.toContain('02:de:ad:be:ef:01');
  });
});
