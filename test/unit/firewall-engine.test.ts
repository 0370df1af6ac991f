/**
 * The firewall engine (src/engines/firewall) against the in-memory nftables
 * (src/plan/nft-fake.ts) and scripted names: what it applies, as how many
 * transactions, and what it keeps when something goes wrong. The kernel's
 * side is the e2e tests' (test/e2e/firewall.test.ts).
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { firewallConfig, type FirewallConfig } from '../../src/config/firewall.js';
import { createLogger } from '../../src/observe/log.js';
import { FakeNft } from '../../src/plan/nft-fake.js';
import { FirewallEngine } from '../../src/engines/firewall/index.js';
import { flowsToCut } from '../../src/engines/firewall/cut.js';
import type { NameSource } from '../../src/engines/firewall/names.js';
import { firewallPlanInput } from '../../src/plan/nft-firewall.js';

const doc = (egress: unknown[]) => JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'default' }, spec: { egress } });
const DOC = doc([{ type: 'Allow', to: { cidrSelector: '1.2.3.0/24' } }, { type: 'Allow', to: { dnsName: 'www.foo.com' } }, { type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }]);
const cfgOf = (text: string): FirewallConfig => firewallConfig({ EGRESS_FIREWALL_POLICY: '/p', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24' }, () => [{ file: '/p', text }]);

class FakeName extends EventEmitter implements NameSource {
  addresses: readonly string[] = [];
  constructor(private first: readonly string[]) { super(); }
  async start() { this.set(this.first); }
  stop() {}
  set(a: readonly string[]) { this.addresses = a; this.emit('change', a); }
}

function setup(text = DOC) {
  const nft = new FakeNft();
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  const names = new Map<string, FakeName>();
  let policy = text;
  const engine = new FirewallEngine({
    config: cfgOf(text), reload: () => cfgOf(policy), nameservers: ['203.0.113.53'], log, nft,
    names: (name) => { const n = new FakeName(name === 'www.foo.com' ? ['203.0.113.26'] : []); names.set(name, n); return n; },
  });
  return { nft, lines, names, engine, setPolicy: (t: string) => { policy = t; }, msgs: () => lines.map((l) => l.msg) };
}

describe('FirewallEngine', () => {
  it('start: first lookups, then the whole table in one transaction; a name change is one small one', async () => {
    const s = setup();
    await s.engine.start();
    expect(s.nft.log).toHaveLength(1);
    expect(s.nft.elements('egress_router_firewall', 'p0_r2_4')).toEqual(['203.0.113.26']);
    expect(s.msgs()).toEqual(['firewall policy applied', 'firewall ready']);
    expect(s.lines[0]).toMatchObject({ policies: 1, rules: 3, sets: 5 });
    s.names.get('www.foo.com')!.set(['203.0.113.27']);
    await s.engine.idle();
    expect(s.nft.log).toHaveLength(2);
    expect(s.nft.log[1]!.size).toBe(4);
    expect(s.nft.elements('egress_router_firewall', 'p0_names4')).toEqual(['203.0.113.27']);
    expect(s.lines.at(-1)).toMatchObject({ msg: 'name updated', name: 'www.foo.com', added: ['203.0.113.27'], removed: ['203.0.113.26'] });
  });
  it('a failed element transaction falls back to replacing the table', async () => {
    const s = setup();
    await s.engine.start();
    s.nft.failNext = 'No such file or directory';
    s.names.get('www.foo.com')!.set(['203.0.113.28']);
    await s.engine.idle();
    expect(s.nft.elements('egress_router_firewall', 'p0_r2_4')).toEqual(['203.0.113.28']);
    expect(s.msgs()).toContain('name update failed, replacing the table');
  });
  it('reload: a valid change replaces the table; the same files again are a no-op; an invalid one keeps the rules', async () => {
    const s = setup();
    await s.engine.start();
    await s.engine.reload();
    expect(s.nft.log).toHaveLength(1);
    s.setPolicy(doc([{ type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }]));
    await s.engine.reload();
    expect(s.nft.log).toHaveLength(2);
    expect(s.nft.elements('egress_router_firewall', 'p0_r2_4')).toBeUndefined();
    s.setPolicy(doc([{ type: 'Bob', to: { cidrSelector: '0.0.0.0/0' } }]));
    await s.engine.reload();
    expect(s.nft.log).toHaveLength(2);
    expect(s.lines.at(-1)).toMatchObject({ msg: 'firewall policy rejected, keeping running rules', err: 'spec.egress[0].type: Invalid value: "Bob": invalid policy type' });
    await s.engine.reload(true);
    expect(s.nft.log).toHaveLength(2);
  });
  it('a policy the kernel refuses keeps the running table and the engine\'s model of it', async () => {
    const s = setup();
    await s.engine.start();
    s.setPolicy(doc([{ type: 'Deny', to: { dnsName: 'other.example' } }]));
    s.nft.failNext = 'nft rejected the ruleset: Error: Could not process rule';
    await s.engine.reload();
    expect(s.lines.at(-1)).toMatchObject({ msg: 'firewall policy rejected, keeping running rules', err: 'nft rejected the ruleset: Error: Could not process rule' });
    expect(s.engine.config.policies[0]!.rules).toHaveLength(3);
    s.names.get('www.foo.com')!.set(['203.0.113.29']);
    await s.engine.idle();
    expect(s.nft.elements('egress_router_firewall', 'p0_r2_4')).toEqual(['203.0.113.29']);
  });
  it('EGRESS_ROUTER_DEBUG adds the rendered ruleset', async () => {
    const nft = new FakeNft();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
    const e = new FirewallEngine({ config: cfgOf(DOC), reload: () => { throw new ConfigError('x'); }, nameservers: [], log, nft, debug: true,
      names: () => new FakeName([]) });
    await e.start();
    expect(lines.find((l) => l.msg === 'firewall ruleset')?.ruleset).toMatch(/^table inet egress_router_firewall \{/);
  });
});

describe('flowsToCut', () => {
  it('only flows the old policy allowed and the new one denies; DNS-only changes never cut', () => {
    const names = new Map([['www.foo.com', ['203.0.113.26']]]);
    const before = firewallPlanInput(cfgOf(DOC), ['203.0.113.53'], names);
    const after = firewallPlanInput(cfgOf(doc([{ type: 'Allow', to: { dnsName: 'www.foo.com' } }, { type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }])), ['203.0.113.53'], names);
    const flows = [
      { proto: 'tcp', src: '10.128.0.20', dst: '1.2.3.4', dport: 80 }, // allowed by rule 1, now denied: cut
      { proto: 'tcp', src: '10.128.0.20', dst: '203.0.113.26', dport: 443 }, // still allowed
      { proto: 'tcp', src: '10.128.0.20', dst: '203.0.113.99', dport: 443 }, // denied before (e.g. DNS dropped it): not cut again
      { proto: 'udp', src: '10.128.0.20', dst: '203.0.113.53', dport: 53 }, // DNS to the nameserver: never filtered
      { proto: 'tcp', src: '10.1.0.5', dst: '1.2.3.4', dport: 80 }, // not a source
    ];
    expect(flowsToCut(flows, before, after)).toEqual([{ src: '10.128.0.20', dst: '1.2.3.4' }]);
  });
});

describe('NameBook', () => {
  it('one source per name; a name whose IPv6 need changes is watched again; addresses in canonical form', async () => {
    const { NameBook } = await import('../../src/engines/firewall/names.js');
    const made: string[] = [];
    const log = createLogger({ level: 'silent' });
    const book = new NameBook((name, ipv6) => { made.push(`${name}/${ipv6}`); return new FakeName(['2001:DB8:0::1', '10.0.0.1', '10.0.0.1']); }, log, () => {});
    const a = await book.sync(new Map([['a.example', { ipv6: false }], ['b.example', { ipv6: false }]]), 100);
    expect(a.get('a.example')).toEqual(['10.0.0.1', '2001:db8::1']);
    await book.sync(new Map([['a.example', { ipv6: true }]]), 100);
    expect(made).toEqual(['a.example/false', 'b.example/false', 'a.example/true']);
    book.stop();
  });
});
