/**
 * Redirect mode as a long-running daemon, re-applied under live traffic, and
 * creating macvlan0 itself (into the pod's namespace) when it is not handed one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, BIN, type Lab } from '../lab/lab.js';

const [A, B] = ADDR.inet;

// Connects through the router, reads the banner, waits, then checks the
// connection still echoes: proves a re-apply keeps established flows.
const LONG_CLIENT = `
const s = require('net').connect(7000, '${ADDR.pod}');
let buf = '';
s.on('data', (d) => { buf += d; if (buf.includes('ping')) { console.log('ECHO ' + buf.split('\\n')[0]); process.exit(0); } });
s.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
setTimeout(() => s.write('ping\\n'), 3000);
setTimeout(() => { console.log('TIMEOUT ' + buf); process.exit(1); }, 8000);
`;

describe('legacy mode daemon', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab({ tcp: [`${A}:80`, `${B}:80`], echo: [`${A}:7000`] });
  });
  afterAll(async () => lab?.destroy());

  it('stays up until SIGTERM, then exits 0', async () => {
    const env = lab.routerEnv({ EGRESS_ROUTER_MODE: 'legacy', EGRESS_DESTINATION: `80 tcp ${A}\n7000 tcp ${A}` });
    const p = await lab.spawnReady('pod', [process.execPath, BIN], 'set-up complete', { env });
    const r = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:80`]);
    expect(r.stdout).toContain(`${A}:80 sees ${ADDR.source}`);
    const code = await new Promise<number | null>((resolve) => { p.on('exit', resolve); p.kill('SIGTERM'); });
    expect(code).toBe(0);
    expect(p.output()).toMatch(/"msg":"exiting"/);
  });

  it('a re-apply keeps established connections and switches new ones', async () => {
    const client = lab.spawn('client', [process.execPath, '-e', LONG_CLIENT]);
    let out = '';
    client.stdout!.on('data', (d) => (out += d));
    const done = new Promise((r) => client.on('exit', r));
    await new Promise((r) => setTimeout(r, 1000));
    // Port 80 now goes to B: new flows follow the new table at once.
    const r = await lab.setupRouter({ EGRESS_DESTINATION: `80 tcp ${B}\n7000 tcp ${A}` });
    expect(r.code).toBe(0);
    await done;
    expect(out).toMatch(new RegExp(`^ECHO ${A}:7000 sees ${ADDR.source}`));
    expect((await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:80`])).stdout).toContain(`${B}:80 sees`);
  });
});

describe('legacy mode follows EGRESS_DESTINATION_FILE', () => {
  let lab: Lab;
  const dir = mkdtempSync(join(tmpdir(), 'erl-dest-'));
  beforeAll(async () => {
    lab = await createLab({ tcp: [`${A}:80`, `${B}:80`] });
  });
  afterAll(async () => { await lab?.destroy(); rmSync(dir, { recursive: true, force: true }); });

  const banner = async () => (await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:80`])).stdout;
  const until = async (want: string) => {
    for (let i = 0; i < 40; i++) {
      if ((await banner()).includes(want)) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  };

  it('re-applies a changed file and keeps the ruleset when the new content is bad', async () => {
    const file = join(dir, 'destination');
    writeFileSync(file, `80 tcp ${A}\n`);
    const env = lab.routerEnv({ EGRESS_ROUTER_MODE: 'legacy', EGRESS_DESTINATION_FILE: file });
    const p = await lab.spawnReady('pod', [process.execPath, BIN], 'set-up complete', { env });
    expect(await banner()).toContain(`${A}:80 sees ${ADDR.source}`);
    writeFileSync(file, `80 tcp ${B}\n`);
    expect(await until(`${B}:80 sees ${ADDR.source}`)).toBe(true);
    writeFileSync(file, '80 tcp not-an-ip\n');
    for (let i = 0; i < 40 && !p.output().includes('not reloaded'); i++) await new Promise((r) => setTimeout(r, 250));
    expect(p.output()).toContain("EGRESS_DESTINATION value '80 tcp not-an-ip' is invalid");
    expect(await banner()).toContain(`${B}:80 sees`);
    p.kill('SIGTERM');
  });
});

describe('proxy modes set up the network only', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab();
  });
  afterAll(async () => lab?.destroy());

  it('http-proxy: routes via macvlan0, no ruleset, no forwarding, exit 0', async () => {
    const r = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(r.code).toBe(0);
    expect((await lab.exec('pod', ['ip', 'route', 'get', A])).stdout).toContain(`dev macvlan0 src ${ADDR.source}`);
    expect((await lab.exec('pod', ['nft', 'list', 'tables'])).stdout).toBe('');
    expect((await lab.exec('pod', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('0');
  });
});

describe('creating macvlan0', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab({ macvlanInPod: false, tcp: [`${A}:80`] });
  });
  afterAll(async () => lab?.destroy());

  it('fails clearly when macvlan0 is missing and no master is named', async () => {
    const r = await lab.setupRouter({ EGRESS_DESTINATION: `80 tcp ${A}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('macvlan0 does not exist and EGRESS_MACVLAN_MASTER is not set: cannot create it\n');
    expect((await lab.exec('pod', ['nft', 'list', 'tables'])).stdout).toBe('');
  });

  it('names a missing master interface', async () => {
    const r = await lab.setupRouter({ EGRESS_DESTINATION: `80 tcp ${A}`, EGRESS_MACVLAN_MASTER: 'eth9' });
    expect(r.stderr).toBe("EGRESS_MACVLAN_MASTER interface 'eth9' not found\n");
  });

  it('creates it on the node and moves it into the pod namespace, then sets up there', async () => {
    const r = await lab.setupRouter({
      EGRESS_DESTINATION: `80 tcp ${A}`, EGRESS_MACVLAN_MASTER: 'eth0', EGRESS_MACVLAN_NETNS: `/run/netns/${lab.ns.pod}`,
    }, 'node');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const link = await lab.exec('pod', ['ip', '-d', 'link', 'show', 'macvlan0']);
    expect(link.stdout).toContain('macvlan mode bridge');
    expect((await lab.exec('node', ['ip', 'link', 'show', 'macvlan0'])).code).not.toBe(0);
    const c = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:80`]);
    expect(c.stdout).toContain(`${A}:80 sees ${ADDR.source}`);
  });
});
