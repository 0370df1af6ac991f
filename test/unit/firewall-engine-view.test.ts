/**
 * The firewall engine with the DNS view (src/engines/firewall/view.ts),
 * against the in-memory nftables and a fake view: started before the first
 * table with the policy's rule names (wildcards included) and the plan's
 * ports, answers' addresses sent to the learned maps with their first-match
 * rule, learned elements carried into a policy replacement (same
 * transaction) and re-decided, setPolicy and resetLearned on a change, stop
 * closes the view, counters as plain numbers. The real view on the kernel is
 * test/e2e/firewall-dns-view.test.ts's.
 */
import { describe, expect, it } from 'vitest';
import { firewallConfig, type FirewallConfig } from '../../src/config/firewall.js';
import { createLogger } from '../../src/observe/log.js';
import { FakeNft } from '../../src/plan/nft-fake.js';
import { FirewallEngine } from '../../src/engines/firewall/index.js';
import type { ViewHandle } from '../../src/engines/firewall/view.js';
import type { DnsViewConfig } from '../../src/engines/firewall/dns-view/view.js';
import { newStats } from '../../src/engines/firewall/dns-view/stats.js';
import { EventEmitter } from 'node:events';
import { Transaction } from '../../src/plan/nft-tx.js';

const doc = (egress: unknown[]) => JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'default' }, spec: { egress } });
const P1 = doc([{ type: 'Allow', to: { cidrSelector: '1.2.3.0/24' } }, { type: 'Allow', to: { dnsName: '*.example.com' } }, { type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }]);
const P2 = doc([{ type: 'Deny', to: { dnsName: '*.example.com' } }]);
const cfgOf = (text: string): FirewallConfig =>
  firewallConfig({ EGRESS_FIREWALL_POLICY: '/p', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24', EGRESS_FIREWALL_DNS_VIEW: '1' }, () => [{ file: '/p', text }]);

class FakeView implements ViewHandle {
  events: string[] = [];
  live: Array<{ set: string; address: string; remainingSeconds: number }> = [];
  stats = { 15353: { ...newStats(), queries: 3 }, 15354: { ...newStats(), queries: 4 } };
  constructor(readonly c: DnsViewConfig) {}
  setPolicy(names: readonly string[]) { this.events.push(`setPolicy ${names.join(',')}`); }
  resetLearned() { this.events.push('reset'); }
  learned() { return this.live; }
  async close() { this.events.push('close'); }
}

class FakeName extends EventEmitter {
  addresses: readonly string[] = [];
  async start() {}
  stop() {}
  set(a: readonly string[]) { this.addresses = a; this.emit('change', a); }
}

function setup(text = P1) {
  const nft = new FakeNft();
  let policy = text;
  let view: FakeView | undefined;
  const names = new Map<string, FakeName>();
  const log = createLogger({ level: 'info', destination: { write: () => {} } });
  const engine = new FirewallEngine({
    config: cfgOf(text), reload: () => cfgOf(policy), nameservers: ['203.0.113.53'], log, nft,
    names: (name) => { const n = new FakeName(); names.set(name, n); return n; },
    startView: async (c) => (view = new FakeView(c)),
  });
  return { nft, engine, names, view: () => view!, setPolicy: (t: string) => { policy = t; } };
}

describe('FirewallEngine with the DNS view', () => {
  it('starts the view before the table, with the rule names and the ports the table redirects to', async () => {
    const s = setup();
    await s.engine.start();
    const c = s.view().c;
    expect([c.port, c.byServer, c.ruleNames, c.graceSeconds, c.learnTimeoutMs]).toEqual([15353, [{ address: '203.0.113.53', port: 15354 }], ['*.example.com'], 30, 250]);
    expect(s.nft.log).toHaveLength(1);
    expect(s.nft.tables.get('inet egress_router_firewall')!.chains.has('dns_view')).toBe(true);
    // Where an answer's address goes: the learned map, with the rule that decides it.
    expect(c.targetsOf!(['*.example.com'], '1.2.3.4', 4)).toEqual([{ set: 'p0_learned4', verdict: { goto: 'p0_r1' } }]);
    expect(c.targetsOf!(['*.example.com'], '5.6.7.8', 4)).toEqual([{ set: 'p0_learned4', verdict: { goto: 'p0_r2' } }]);
  });
  it('a policy change carries the learned elements into the new table, re-decided, then resets the view\'s shadow', async () => {
    const s = setup();
    await s.engine.start();
    s.view().c.targetsOf!(['*.example.com'], '5.6.7.8', 4);
    s.view().live = [{ set: 'p0_learned4', address: '5.6.7.8', remainingSeconds: 25 }];
    s.setPolicy(P2);
    await s.engine.reload();
    expect(s.view().events).toEqual(['reset', 'setPolicy *.example.com', 'reset']);
    const tx = s.nft.log.at(-1)!;
    const learned = tx.ops.find((o) => o.obj.kind === 'set' && o.obj.set.name === 'p0_learned4');
    expect(learned && learned.obj.kind === 'set' && learned.obj.set.elements).toEqual([{ key: '5.6.7.8', verdict: { goto: 'p0_r1' }, timeout: 25 }]);
  });
  it('stop closes the view; the counters are plain numbers summed over the ports', async () => {
    const s = setup();
    await s.engine.start();
    expect(s.engine.viewStats()).toMatchObject({ queries: 7, servfail_timeout: 0, learned_addresses: 0 });
    await s.engine.stop();
    expect(s.view().events.at(-1)).toBe('close');
    expect(s.engine.viewStats()).toBeUndefined();
  });
  it('a resolved name taking a learned address under an earlier rule re-decides the learned element in the same transaction', async () => {
    const s = setup(doc([{ type: 'Deny', to: { dnsName: 'bad.com' } }, { type: 'Allow', to: { dnsName: '*.example.com' } }]));
    await s.engine.start();
    expect(s.view().c.targetsOf!(['*.example.com'], '5.6.7.8', 4)).toEqual([{ set: 'p0_learned4', verdict: { goto: 'p0_r2' } }]);
    s.view().live = [{ set: 'p0_learned4', address: '5.6.7.8', remainingSeconds: 20 }];
    // What the view wrote over netlink.
    await s.nft.run(new Transaction('inet', 'egress_router_firewall').add({ kind: 'element', set: 'p0_learned4', map: true, elements: [{ key: '5.6.7.8', verdict: { goto: 'p0_r2' }, timeout: 20 }] }));
    s.names.get('bad.com')!.set(['5.6.7.8']);
    await s.engine.idle();
    const ops = s.nft.log.at(-1)!.ops.filter((o) => o.obj.kind === 'element' && o.obj.set === 'p0_learned4').map((o) => [o.verb, o.obj.kind === 'element' && o.obj.elements]);
    expect(ops).toEqual([['delete', [{ key: '5.6.7.8' }]], ['add', [{ key: '5.6.7.8', verdict: { goto: 'p0_r1' }, timeout: 20 }]]]);
  });
});
