/**
 * The firewall's DNS view in the lab: the client's port-53 traffic is
 * redirected (nft, the plan's own rules) to the view's forwarders in the node
 * namespace, which learn into a real nft set before releasing answers.
 * Asserted from the client's side (getent, dig, raw bytes) and in the kernel
 * (`nft list set`), with the ordering checked while the answer is held.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer, type Zone } from '../lab/dns.js';
import { ensureBuilt } from '../unit/dist.js';
import { toReplaceBatch } from '../../src/plan/nft.js';
import { dnsViewRedirectRules, learnedSet } from '../../src/plan/nft-dns-view.js';

const RUN = join(ROOT, 'test/lab/dns-view-run.mjs');
const ASK = join(ROOT, 'test/lab/dns-ask.mjs');
const TABLE = 'erdv_test';
const ZONE: Zone = {
  'www.watched.test': { A: ['203.0.113.10'], AAAA: ['2001:db8:113::10'], ttl: 2 },
  'alias.test': { CNAME: 'www.watched.test', ttl: 30 },
  'a.wild.test': { A: ['203.0.113.21'], ttl: 5 },
  'b.wild.test': { A: ['203.0.113.22'], ttl: 5 },
  'other.test': { A: ['203.0.113.12'], ttl: 5 },
  'big.test': { A: ['203.0.113.30', '203.0.113.31'], truncate: true },
};

let lab: Lab;
let dns: DnsServer;
let view: ChildProcessWithoutNullStreams;
let viewOut = '';
const tmp = mkdtempSync(join(tmpdir(), 'erdv-e2e-'));

async function setElements(): Promise<string[]> {
  const r = await lab.exec('node', ['nft', '-j', 'list', 'set', 'inet', TABLE, 'learned4']);
  expect(r.code, r.stderr).toBe(0);
  const set = (JSON.parse(r.stdout).nftables as Array<{ set?: { elem?: Array<{ elem: { val: string } } | string> } }>).find((x) => x.set)!.set!;
  return (set.elem ?? []).map((e) => (typeof e === 'string' ? e : e.elem.val));
}

async function waitFor(what: () => boolean, ms: number, label: string): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error(`${label} not within ${ms} ms; view output:\n${viewOut}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ask = (ns: 'client' | 'node', server: string, name: string, type: string, proto: string, edns = false) =>
  lab.exec(ns, [process.execPath, ASK, server, name, type, proto, ...(edns ? ['edns'] : [])]).then((r) => r.stdout.trim());

async function stats(): Promise<Record<string, Record<string, number>>> {
  const before = viewOut.length;
  view.stdin.write('stats\n');
  await waitFor(() => viewOut.slice(before).includes('"stats"'), 3000, 'stats');
  return JSON.parse(viewOut.slice(before).split('\n').find((l) => l.includes('"stats"'))!);
}

beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ macvlanInPod: false });
  dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
  lab.writeResolvConf('client', ADDR.dns);
  // The firewall's pieces as the plan gives them, applied as JSON in the node namespace.
  const rules = dnsViewRedirectRules({ sources: { 4: [`${ADDR.client}/32`], 6: [] }, port: 5353, byServer: [{ address: ADDR.dns, port: 5354 }] });
  const batch = toReplaceBatch({ family: 'inet', name: TABLE, chains: [{ name: 'dns_view', type: 'nat', hook: 'prerouting', priority: -100, rules }] });
  batch.nftables.push(learnedSet({ family: 'inet', table: TABLE }, 'learned4', 4).json, learnedSet({ family: 'inet', table: TABLE }, 'learned6', 6).json);
  writeFileSync(join(tmp, 'batch.json'), JSON.stringify(batch));
  const applied = await lab.exec('node', ['nft', '-j', '-f', join(tmp, 'batch.json')]);
  expect(applied.code, applied.stderr).toBe(0);
  view = spawn('ip', ['netns', 'exec', lab.ns.node, process.execPath, RUN, '--forward', `5353=${ADDR.dns}`, '--forward', `5354=${ADDR.dns}`,
    '--rules', 'www.watched.test,*.wild.test', '--table', `inet/${TABLE}`, '--set4', 'learned4', '--set6', 'learned6',
    '--gate', '*.wild.test', '--timeout', '15000'], { stdio: ['pipe', 'pipe', 'pipe'] });
  view.stdout.on('data', (d) => (viewOut += d));
  view.stderr.on('data', (d) => (viewOut += d));
  await waitFor(() => viewOut.includes('"ready"') || view.exitCode !== null, 15_000, 'view ready');
  expect(view.exitCode, viewOut).toBeNull();
});

afterAll(async () => {
  if (view && view.exitCode === null) view.kill('SIGKILL');
  await dns?.stop();
  await lab?.destroy();
  rmSync(tmp, { recursive: true, force: true });
});

describe('dns view in the lab', () => {
  it('a real client (getent, the namespace\'s resolv.conf) resolves a watched name; its address is in the set', async () => {
    const r = await lab.exec('client', ['getent', 'ahostsv4', 'www.watched.test']);
    expect(r.stdout).toContain('203.0.113.10');
    expect(await setElements()).toContain('203.0.113.10');
    expect(viewOut).toMatch(/"event":"learned","rules":\["www.watched.test"\],"addresses":\["203.0.113.10"\],"ttl":2/);
  });

  it.each([['udp', 'a.wild.test', '203.0.113.21'], ['tcp', 'b.wild.test', '203.0.113.22']])(
    'over %s, the address is in `nft list set` while the client still waits for its answer', async (proto, name, addr) => {
      expect(await setElements()).not.toContain(addr);
      const dig = spawn('ip', ['netns', 'exec', lab.ns.client, 'dig', '+tries=1', '+time=10', ...(proto === 'tcp' ? ['+tcp'] : []), '+short', name, 'A'],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let digOut = '';
      dig.stdout.on('data', (d) => (digOut += d));
      const exited = new Promise<number | null>((r) => dig.on('exit', r));
      await waitFor(() => viewOut.includes(`"addresses":["${addr}"]`), 10_000, `learned ${addr}`);
      // The view holds the answer (gated): the kernel already has the address, the client has nothing yet.
      expect(await setElements()).toContain(addr);
      expect(dig.exitCode).toBeNull();
      expect(digOut).toBe('');
      view.stdin.write('go\n');
      expect(await exited).toBe(0);
      expect(digOut.trim()).toBe(addr);
    });

  it('answers through the view are byte-equal to direct ones (A, AAAA, CNAME, NXDOMAIN, truncation, EDNS; UDP and TCP)', async () => {
    const cases: Array<[string, string]> = [['www.watched.test', 'A'], ['www.watched.test', 'AAAA'], ['alias.test', 'A'], ['nx.test', 'A'], ['other.test', 'A'], ['big.test', 'A']];
    for (const [name, type] of cases) {
      for (const proto of ['udp', 'tcp']) {
        for (const edns of [false, true]) {
          const direct = await ask('node', ADDR.dns, name, type, proto, edns);
          const via = await ask('client', ADDR.dns, name, type, proto, edns);
          expect(direct).toMatch(/^[0-9a-f]{24,}$/);
          expect(via, `${name} ${type} ${proto} edns=${edns}`).toBe(direct);
        }
      }
    }
    // big.test over UDP is truncated (TC), over TCP complete: both went through the view.
    const tc = Buffer.from(await ask('client', ADDR.dns, 'big.test', 'A', 'udp'), 'hex');
    expect(tc.readUInt16BE(2) & 0x0200).toBe(0x0200);
  });

  it('a name outside every rule passes and adds nothing; queries to any server are intercepted', async () => {
    const before = await stats();
    expect(await lab.exec('client', ['dig', '+short', '+tries=1', 'other.test']).then((r) => r.stdout.trim())).toBe('203.0.113.12');
    // 203.0.113.99 runs no DNS server: the catch-all forwarder answers for the node's nameservers.
    expect(await lab.exec('client', ['dig', '+short', '+tries=1', '@203.0.113.99', 'other.test']).then((r) => r.stdout.trim())).toBe('203.0.113.12');
    const after = await stats();
    expect(await setElements()).not.toContain('203.0.113.12');
    expect(viewOut).not.toContain('203.0.113.12');
    expect(after['5354']!.queries - before['5354']!.queries).toBe(1);
    expect(after['5353']!.queries - before['5353']!.queries).toBe(1);
    expect(after['5354']!.malformed + after['5353']!.malformed).toBe(0);
  });

  it('while the daemon is down (rules kept), lookups fail at once and learned addresses stay in the set', async () => {
    const before = await setElements();
    expect(before).toContain('203.0.113.10');
    // The view process is ours (spawned above): stop it as a crash would.
    view.kill('SIGKILL');
    await new Promise((r) => view.once('exit', r));
    const t0 = Date.now();
    const dig = await lab.exec('client', ['dig', '+tries=1', '+time=5', 'www.watched.test']);
    // The redirect leads to a port nothing listens on: refused, not a 5 s timeout.
    expect(dig.stdout + dig.stderr).toMatch(/refused/i);
    expect(Date.now() - t0).toBeLessThan(3000);
    const t1 = Date.now();
    const getent = await lab.exec('client', ['getent', 'ahostsv4', 'www.watched.test']);
    expect(getent.code).not.toBe(0);
    // resolv.conf says timeout:1 attempts:2; a refused query does not wait for either.
    expect(Date.now() - t1).toBeLessThan(1500);
    expect(await setElements()).toEqual(before);
  });
});
