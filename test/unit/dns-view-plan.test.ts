// The DNS view's nft pieces (pure) and the nft-backed learn hook with a fake nft.
import { describe, expect, it } from 'vitest';
import { dnsViewInputGuard, dnsViewRedirectRules, learnedSet, learnElements } from '../../src/plan/nft-dns-view.js';
import { nftLearner, nftSessionWrite } from '../../src/engines/firewall/dns-view/learner.js';
import type { NftSession } from '../../src/apply/nft-session.js';

const T = { family: 'inet' as const, table: 'egress_router_firewall' };
const line = (r: { pieces: readonly { text: string }[]; comment?: string }) => r.pieces.map((p) => p.text).join(' ') + (r.comment ? ` comment "${r.comment}"` : '');

describe('nft plan for the DNS view', () => {
  it('redirects the sources\' UDP and TCP 53 to the forwarder, per server first', () => {
    const rules = dnsViewRedirectRules({ sources: { 4: ['10.128.0.0/24', '10.129.0.5'], 6: ['fd00:128::/64'] }, port: 5353, byServer: [{ address: '172.30.0.10', port: 5354 }] });
    expect(rules.map(line)).toEqual([
      'ip saddr { 10.128.0.0/24, 10.129.0.5 } ip daddr 172.30.0.10 meta l4proto { tcp, udp } th dport 53 counter redirect to :5354 comment "dns view: 172.30.0.10"',
      'ip saddr { 10.128.0.0/24, 10.129.0.5 } meta l4proto { tcp, udp } th dport 53 counter redirect to :5353 comment "dns view"',
      'ip6 saddr fd00:128::/64 meta l4proto { tcp, udp } th dport 53 counter redirect to :5353 comment "dns view"',
    ]);
    expect(rules[1]!.pieces.map((p) => p.json)).toEqual([
      { match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: { set: [{ prefix: { addr: '10.128.0.0', len: 24 } }, '10.129.0.5'] } } },
      { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: ['tcp', 'udp'] } } },
      { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: 53 } },
      { counter: null },
      { redirect: { port: 5353 } },
    ]);
  });
  it('guards the forwarder ports: only redirected (dnat) flows reach them', () => {
    const g = dnsViewInputGuard([5354, 5353, 5353]);
    expect(g.map(line)).toEqual(['meta l4proto { tcp, udp } th dport { 5353, 5354 } ct status ! dnat counter drop comment "dns view: redirected queries only"']);
    expect(g[0]!.pieces[2]!.json).toEqual({ match: { op: '!', left: { ct: { key: 'status' } }, right: 'dnat' } });
    expect(dnsViewInputGuard([])).toEqual([]);
  });
  it('learned sets have timeouts; a learn is add, delete, add in one transaction', () => {
    expect(learnedSet(T, 'r2_learned4', 4).text).toBe('add set inet egress_router_firewall r2_learned4 { type ipv4_addr; flags timeout; size 65536; }');
    const e = learnElements(T, [{ set: 's4', address: '192.0.2.1' }, { set: 's4', address: '192.0.2.2' }, { set: 's6', address: '2001:db8::1' }, { set: 's4', address: '192.0.2.1' }], 37);
    expect(e.text).toBe([
      'add element inet egress_router_firewall s4 { 192.0.2.1 timeout 37s, 192.0.2.2 timeout 37s }',
      'delete element inet egress_router_firewall s4 { 192.0.2.1, 192.0.2.2 }',
      'add element inet egress_router_firewall s4 { 192.0.2.1 timeout 37s, 192.0.2.2 timeout 37s }',
      'add element inet egress_router_firewall s6 { 2001:db8::1 timeout 37s }',
      'delete element inet egress_router_firewall s6 { 2001:db8::1 }',
      'add element inet egress_router_firewall s6 { 2001:db8::1 timeout 37s }',
    ].join('; '));
    expect(e.json[0]).toEqual({ add: { element: { family: 'inet', table: 'egress_router_firewall', name: 's4', elem: [{ elem: { val: '192.0.2.1', timeout: 37 } }, { elem: { val: '192.0.2.2', timeout: 37 } }] } } });
    expect(e.json[1]).toEqual({ delete: { element: { family: 'inet', table: 'egress_router_firewall', name: 's4', elem: ['192.0.2.1', '192.0.2.2'] } } });
  });
});

describe('nft learner (fake nft)', () => {
  const sets: Record<string, { 4?: string; 6?: string }> = { 'www.foo.com': { 4: 'r1_4', 6: 'r1_6' }, '*.example.com': { 4: 'r2_4' } };
  const make = () => {
    const lines: string[] = [];
    let fail = false;
    let hold: Promise<void> | undefined;
    const fake = { run: async (x: string) => { lines.push(x); if (hold) await hold; if (fail) throw new Error('nft: no'); } } as unknown as NftSession;
    const l = nftLearner({ setsOf: (r) => sets[r], graceSeconds: 30, write: nftSessionWrite(fake, T) });
    return { l, lines, failNext: (v: boolean) => (fail = v), holdWith: (p: Promise<void> | undefined) => (hold = p) };
  };
  const A = [{ address: '192.0.2.1', family: 4 as const }, { address: '2001:db8::1', family: 6 as const }];

  it('one transaction per learn, TTL + grace, each family to its set', async () => {
    const { l, lines } = make();
    await l.learn(['www.foo.com', '*.example.com'], A, 5);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('add element inet egress_router_firewall r1_4 { 192.0.2.1 timeout 35s }');
    expect(lines[0]).toContain('add element inet egress_router_firewall r1_6 { 2001:db8::1 timeout 35s }');
    expect(lines[0]).toContain('add element inet egress_router_firewall r2_4 { 192.0.2.1 timeout 35s }');
    expect(lines[0]).not.toContain('r2_6');
  });
  it('skips the kernel while the set holds the address long enough, never shortens it', async () => {
    const { l, lines } = make();
    await l.learn(['www.foo.com'], A, 300);
    await l.learn(['www.foo.com'], A, 5);
    await l.learn(['www.foo.com'], A, 300);
    expect(lines).toHaveLength(1);
    await l.learn(['www.foo.com'], A, 600);
    expect(lines).toHaveLength(2);
    expect(l.counts).toEqual({ transactions: 2, skipped: 2 });
    expect(l.snapshot().map((e) => [e.set, e.address, e.remainingSeconds])).toEqual([['r1_4', '192.0.2.1', 630], ['r1_6', '2001:db8::1', 630]]);
  });
  it('a learn of an address whose add is in flight waits for that add', async () => {
    const { l, holdWith } = make();
    let release!: () => void;
    holdWith(new Promise<void>((r) => (release = r)));
    const order: string[] = [];
    const first = l.learn(['www.foo.com'], A, 60).then(() => order.push('first'));
    const second = l.learn(['www.foo.com'], A, 60).then(() => order.push('second'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first', 'second']);
  });
  it('covered: only addresses committed for long enough', async () => {
    const { l, holdWith } = make();
    expect(l.learn.covered!(['www.foo.com'], A, 60)).toBe(false);
    let release!: () => void;
    holdWith(new Promise<void>((r) => (release = r)));
    const p = l.learn(['www.foo.com'], A, 60);
    // In flight is not committed.
    expect(l.learn.covered!(['www.foo.com'], A, 60)).toBe(false);
    release();
    await p;
    expect(l.learn.covered!(['www.foo.com'], A, 60)).toBe(true);
    expect(l.learn.covered!(['www.foo.com', '*.example.com'], A, 60)).toBe(false);
    expect(l.learn.covered!(['www.foo.com'], A, 600)).toBe(false);
    // A rule without sets (or a family without a set) needs nothing.
    expect(l.learn.covered!(['no.such.rule'], A, 60)).toBe(true);
  });
  it('takes its own word for a bounded time only (trustSeconds): then writes again', async () => {
    const lines: string[] = [];
    const fake = { run: async (x: string) => { lines.push(x); } } as unknown as NftSession;
    const l = nftLearner({ setsOf: (r) => sets[r], graceSeconds: 30, trustSeconds: 0.05, write: nftSessionWrite(fake, T) });
    await l.learn(['www.foo.com'], A, 300);
    expect(l.learn.covered!(['www.foo.com'], A, 300)).toBe(true);
    await l.learn(['www.foo.com'], A, 300);
    expect(lines).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 80));
    expect(l.learn.covered!(['www.foo.com'], A, 300)).toBe(false);
    await l.learn(['www.foo.com'], A, 300);
    expect(lines).toHaveLength(2);
  });
  it('a failed add fails the learn and is forgotten', async () => {
    const { l, lines, failNext } = make();
    failNext(true);
    await expect(l.learn(['www.foo.com'], A, 60)).rejects.toThrow('nft: no');
    failNext(false);
    await l.learn(['www.foo.com'], A, 60);
    expect(lines).toHaveLength(2);
  });
});

describe('nft learner with targetsOf (the firewall\'s learned maps)', () => {
  it('writes each address with the verdict targetsOf gives, in one transaction; covered and snapshot know the verdict', async () => {
    const writes: Array<{ elements: unknown; timeout: number }> = [];
    const l = nftLearner({
      graceSeconds: 30, write: async (elements, timeout) => { writes.push({ elements, timeout }); },
      targetsOf: (rules, address) => (rules.includes('*.example.com') ? [{ set: 'p0_learned4', verdict: { goto: address.startsWith('1.2.3.') ? 'p0_r1' : 'p0_r2' } }] : []),
    });
    const addrs = [{ address: '1.2.3.4', family: 4 as const }, { address: '5.6.7.8', family: 4 as const }];
    await l.learn(['*.example.com'], addrs, 60);
    expect(writes).toEqual([{ timeout: 90, elements: [
      { set: 'p0_learned4', address: '1.2.3.4', verdict: { goto: 'p0_r1' } }, { set: 'p0_learned4', address: '5.6.7.8', verdict: { goto: 'p0_r2' } }] }]);
    expect(l.learn.covered!(['*.example.com'], addrs, 60)).toBe(true);
    expect(l.snapshot().map((e) => [e.address, e.verdict])).toEqual([['1.2.3.4', { goto: 'p0_r1' }], ['5.6.7.8', { goto: 'p0_r2' }]]);
    // Names targetsOf places nowhere write nothing.
    await l.learn(['other.com'], addrs, 60);
    expect(writes).toHaveLength(1);
  });
  it('learnElements renders map elements with their verdicts (JSON and text)', () => {
    const r = learnElements(T, [{ set: 'm4', address: '192.0.2.1', verdict: { goto: 'p0_r2' } }], 31);
    expect(r.text).toBe('add element inet egress_router_firewall m4 { 192.0.2.1 timeout 31s : goto p0_r2 }; delete element inet egress_router_firewall m4 { 192.0.2.1 }; add element inet egress_router_firewall m4 { 192.0.2.1 timeout 31s : goto p0_r2 }');
    expect(r.json[0]).toEqual({ add: { element: { family: 'inet', table: 'egress_router_firewall', name: 'm4', elem: [[{ elem: { val: '192.0.2.1', timeout: 31 } }, { goto: { target: 'p0_r2' } }]] } } });
  });
});
