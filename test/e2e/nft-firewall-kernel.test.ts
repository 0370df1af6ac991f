/**
 * The firewall's transactions against the kernel, in a throwaway network
 * namespace: the table (set-based and linear, the documentation's policy and
 * a 1000-rule one) and then name updates as element transactions; the kernel
 * must end up holding what the in-memory FakeNft holds after the same
 * transactions. (Traffic through the firewall: test/e2e/firewall.test.ts.)
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { firewallConfig } from '../../src/config/firewall.js';
import { FakeNft } from '../../src/plan/nft-fake.js';
import { fullTableText, replaceTableTx, txJson, type Transaction } from '../../src/plan/nft.js';
import { firewallPlanInput, firewallTable, linearFirewallTable, type FirewallPlanInput } from '../../src/plan/nft-firewall.js';
import { nameUpdateTx } from '../../src/plan/nft-firewall-names.js';
import { ROOT, ensureBuilt } from '../unit/dist.js';

const isRoot = process.getuid?.() === 0;
const NS = `erfw-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const sh = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000 });

type R = { type: string; to: Record<string, string> };
const doc = (egress: R[]) => JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'p' }, spec: { egress } });
const DOC: R[] = [{ type: 'Allow', to: { cidrSelector: '1.2.3.0/24' } }, { type: 'Allow', to: { dnsName: 'www.foo.com' } }, { type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }];
const input = (rules: R[], names: Map<string, string[]>): FirewallPlanInput => firewallPlanInput(firewallConfig(
  { EGRESS_FIREWALL_POLICY: '/p', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24,fd00:128::/64', EGRESS_FIREWALL_INTERFACE: 'eth0', EGRESS_FIREWALL_MAX_RULES: '1000' },
  () => [{ file: '/p', text: doc(rules) }]), ['203.0.113.53'], names);

describe.skipIf(!isRoot)('firewall transactions in the kernel (throwaway netns)', () => {
  let dir = '';
  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'erfw-'));
    expect(sh(['ip', 'netns', 'add', NS]).status).toBe(0);
  });
  afterAll(() => {
    sh(['ip', 'netns', 'del', NS]);
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  const apply = (tx: Transaction) => {
    const file = join(dir, `tx${n++}.json`);
    writeFileSync(file, JSON.stringify(txJson(tx)));
    const r = sh(['ip', 'netns', 'exec', NS, 'nft', '-j', '-f', file]);
    expect(r.status, r.stderr).toBe(0);
  };
  const kernelElements = (set: string): string[] => {
    const r = sh(['ip', 'netns', 'exec', NS, 'nft', '-j', 'list', set.includes('names') ? 'map' : 'set', 'inet', 'egress_router_firewall', set]);
    expect(r.status, r.stderr).toBe(0);
    const parsed = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables: Array<{ set?: { elem?: unknown[] }; map?: { elem?: unknown[] } }> };
    const s = parsed.nftables.find((x) => x.set || x.map);
    return ((s?.set ?? s?.map)?.elem ?? []).map((e) => (Array.isArray(e) ? e[0] : e) as string).sort();
  };

  it('the table, then name updates as element transactions: the kernel holds what the fake holds', async () => {
    const fake = new FakeNft();
    let inp = input(DOC, new Map([['www.foo.com', ['203.0.113.26', '1.2.3.7', '2001:db8::26']]]));
    const steps: Transaction[] = [replaceTableTx(firewallTable(inp))];
    for (const next of [['203.0.113.27', '1.2.3.7', '2001:db8::27'], [], ['203.0.113.26']]) {
      const u = nameUpdateTx(inp, 'www.foo.com', next);
      steps.push(u.tx);
      inp = { ...inp, names: new Map([['www.foo.com', next]]) };
    }
    for (const tx of steps) {
      if (tx.size === 0) continue;
      apply(tx);
      await fake.run(tx);
      for (const set of ['p0_r2_4', 'p0_r2_6', 'p0_names4', 'p0_names6']) expect(kernelElements(set), set).toEqual(fake.elements('egress_router_firewall', set));
    }
    expect(kernelElements('p0_names4')).toEqual(['203.0.113.26']);
  });

  it('a 1000-rule policy, set-based and linear, replaces the table in one transaction each', () => {
    const many: R[] = [...Array.from({ length: 998 }, (_, i) => (i % 10 === 5
      ? { type: 'Allow', to: { dnsName: `n${i}.example.com` } }
      : { type: i % 2 ? 'Allow' : 'Deny', to: { cidrSelector: `10.${64 + (i >> 8)}.${i & 255}.0/24` } })), ...DOC.slice(2)];
    const inp = input(many, new Map([['n5.example.com', ['10.64.5.9', '9.9.9.9']]]));
    apply(replaceTableTx(firewallTable(inp)));
    expect(kernelElements('p0_names4')).toEqual(['10.64.5.9', '9.9.9.9']);
    apply(replaceTableTx(linearFirewallTable(inp)));
    expect(kernelElements('p0_r6_4')).toEqual(['10.64.5.9', '9.9.9.9']);
    // What `firewall render` prints is nft input too.
    for (const t of [firewallTable(inp), linearFirewallTable(inp)]) {
      const file = join(dir, `text${n++}.nft`);
      writeFileSync(file, 'delete table inet egress_router_firewall\n' + fullTableText(t));
      const r = sh(['ip', 'netns', 'exec', NS, 'nft', '-f', file]);
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it('element updates over netlink (the daemon\'s path): applied in the kernel, all or nothing', () => {
    apply(replaceTableTx(firewallTable(input(DOC, new Map([['www.foo.com', ['203.0.113.26']]])))));
    // kernelNft talks netlink in its own process's namespace: run it inside the throwaway one.
    const script = `
      const { kernelNft } = await import(${JSON.stringify(join(ROOT, 'dist/apply/nft.js'))});
      const { Transaction } = await import(${JSON.stringify(join(ROOT, 'dist/plan/nft-tx.js'))});
      const tx = (ops) => { const t = new Transaction('inet', 'egress_router_firewall'); for (const [v, set, key, chain] of ops) t[v]({ kind: 'element', set, map: !!chain, elements: [{ key, verdict: chain && { goto: chain } }] }); return t; };
      await kernelNft.run(tx([['delete', 'p0_r2_4', '203.0.113.26'], ['add', 'p0_r2_4', '203.0.113.27'], ['add', 'p0_r2_6', '2001:db8::27'],
        ['delete', 'p0_names4', '203.0.113.26'], ['add', 'p0_names4', '203.0.113.27', 'p0_r2'], ['add', 'p0_names6', '2001:db8::27', 'p0_r2']]));
      await kernelNft.run(tx([['add', 'p0_r2_4', '9.9.9.9'], ['delete', 'p0_r2_4', '8.8.8.8']])).then(() => console.log('accepted'), (e) => console.log(e.message));`;
    const r = sh(['ip', 'netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('nf_tables refused the element update: ENOENT\n');
    expect(kernelElements('p0_r2_4')).toEqual(['203.0.113.27']);
    expect(kernelElements('p0_r2_6')).toEqual(['2001:db8::27']);
    expect(kernelElements('p0_names4')).toEqual(['203.0.113.27']);
    expect(kernelElements('p0_names6')).toEqual(['2001:db8::27']);
    const map = sh(['ip', 'netns', 'exec', NS, 'nft', 'list', 'map', 'inet', 'egress_router_firewall', 'p0_names4']).stdout;
    expect(map).toContain('203.0.113.27 : goto p0_r2');
  });
});
