// AddressPool (spreading, down marks, back-off) and the kernel path's nft table.
import { describe, expect, it } from 'vitest';
import { AddressPool } from '../../src/engines/dns-proxy/pool.js';
import { dnsProxyOptions } from '../../src/config/dns-proxy-options.js';
import { dnsProxyTable, MAP_AFTER } from '../../src/plan/nft-dns-proxy.js';
import { toReplaceBatch, toText } from '../../src/plan/nft.js';

describe('AddressPool', () => {
  it('goes round-robin over all addresses', () => {
    const p = new AddressPool({}, ['a', 'b', 'c']);
    expect([p.pick(), p.pick(), p.pick(), p.pick()]).toEqual(['a', 'b', 'c', 'a']);
  });

  it('skips an address marked down until its back-off ends, doubling per failure', () => {
    const p = new AddressPool({ downMs: 1000, maxDownMs: 3000 }, ['a', 'b']);
    p.markDown('a', 0);
    expect(p.isDown('a', 999)).toBe(true);
    expect(p.pick(new Set(), 500)).toBe('b');
    expect(p.pick(new Set(), 500)).toBe('b');
    expect(p.isDown('a', 1000)).toBe(false);
    p.markDown('a', 1000);
    expect(p.isDown('a', 2999)).toBe(true);
    p.markDown('a', 3000); // third failure: 4000 capped at 3000
    expect(p.isDown('a', 5999)).toBe(true);
    expect(p.isDown('a', 6000)).toBe(false);
    p.markUp('a');
    expect(p.isDown('a', 3001)).toBe(false);
  });

  it('skips addresses already tried for this client, and gives up when all are', () => {
    const p = new AddressPool({}, ['a', 'b']);
    expect(p.pick(new Set(['a']))).toBe('b');
    expect(p.pick(new Set(['a', 'b']))).toBeUndefined();
  });

  it('when every untried address is down, picks the one that comes back first', () => {
    const p = new AddressPool({ downMs: 1000 }, ['a', 'b']);
    p.markDown('a', 100);
    p.markDown('b', 0);
    expect(p.pick(new Set(), 200)).toBe('b');
  });

  it('a new address set keeps the down marks of addresses still in it', () => {
    const p = new AddressPool({}, ['a', 'b']);
    p.markDown('a', Date.now());
    p.markDown('b', Date.now());
    p.set(['a', 'c']);
    expect(p.isDown('a')).toBe(true);
    expect(p.isDown('b')).toBe(false);
    expect(p.addresses).toEqual(['a', 'c']);
  });

  it('an empty pool has nothing to pick', () => {
    expect(new AddressPool().pick()).toBeUndefined();
  });
});

describe('kernel path nft table', () => {
  const t = dnsProxyTable([
    { port: 8002, remotePort: 80, addresses: ['203.0.113.10', '203.0.113.11'], comment: '8002 -> two.example:80' },
    { port: 8001, remotePort: 80, addresses: ['203.0.113.10'], comment: '8001 -> 203.0.113.10:80' },
    { port: 8005, remotePort: 80, addresses: [], comment: '8005 -> missing.example:80' },
    { port: 8006, remotePort: 443, addresses: ['2001:db8::1', '203.0.113.12', '2001:db8::2'], comment: '8006 -> dual.example:443' },
    { port: 8007, remotePort: 80, addresses: ['2001:db8::3'], comment: '8007 -> 2001:db8::3:80' },
  ], 't');

  it('spreads with numgen over a map, DNATs a single address directly, and has no rule for an unresolved port', () => {
    const text = toText(t);
    expect(text).toContain('table inet t');
    expect(text).toContain('meta nfproto ipv4 tcp dport 8002 counter dnat ip to numgen inc mod 2 map { 0 : 203.0.113.10, 1 : 203.0.113.11 } :80');
    expect(text).toContain('meta nfproto ipv4 tcp dport 8001 counter dnat ip to 203.0.113.10:80');
    expect(text).not.toContain('8005');
    expect(text).toContain('ct status dnat masquerade');
  });

  it('JSON carries the same map as nft itself prints it', () => {
    const rules = toReplaceBatch(t).nftables.filter((c) => (c as { add?: { rule?: unknown } }).add?.rule) as Array<{ add: { rule: { expr: unknown[] } } }>;
    expect(rules[0]!.add.rule.expr[3]).toEqual({
      dnat: { family: 'ip', addr: { map: { key: { numgen: { mode: 'inc', mod: 2, offset: 0 } }, data: { set: [[0, '203.0.113.10'], [1, '203.0.113.11']] } } }, port: 80 },
    });
  });

  it('DNATs each family to its own addresses: IPv6 clients to IPv6 addresses, IPv4 clients to IPv4', () => {
    const text = toText(t);
    expect(text).toContain('meta nfproto ipv4 tcp dport 8006 counter dnat ip to 203.0.113.12:443');
    expect(text).toContain('meta nfproto ipv6 tcp dport 8006 counter dnat ip6 to numgen inc mod 2 map { 0 : 2001:db8::1, 1 : 2001:db8::2 } :443');
    expect(text).toContain('meta nfproto ipv6 tcp dport 8007 counter dnat ip6 to [2001:db8::3]:80');
    expect(text).not.toMatch(/ipv4 tcp dport 8007/);
  });

  it(`past ${MAP_AFTER} single-address ports of a family, those share one tcp dport map; spread ports keep their rule`, () => {
    const many = Array.from({ length: MAP_AFTER + 1 }, (_, i) => ({ port: 20000 + i, remotePort: 80 + (i % 2), addresses: [`203.0.113.${i + 1}`, `2001:db8::${i + 1}`], comment: `line ${i}` }));
    const big = dnsProxyTable([...many, { port: 9000, remotePort: 443, addresses: ['203.0.113.200', '203.0.113.201'], comment: 'two' }], 't');
    const text = toText(big);
    expect(text).toContain('meta nfproto ipv4 dnat ip to tcp dport map { 20000 : 203.0.113.1 . 80, 20001 : 203.0.113.2 . 81,');
    expect(text).toContain('meta nfproto ipv6 dnat ip6 to tcp dport map { 20000 : 2001:db8::1 . 80,');
    expect(text).toContain('meta nfproto ipv4 tcp dport 9000 counter dnat ip to numgen inc mod 2 map');
    expect(text).not.toContain('tcp dport 20000 counter');
    // The JSON as nft itself lists such a rule (nft -j list).
    const rules = toReplaceBatch(big).nftables.filter((c) => (c as { add?: { rule?: unknown } }).add?.rule) as Array<{ add: { rule: { expr: unknown[] } } }>;
    const mapRule = rules.find((r) => JSON.stringify(r).includes('"concat"'))!;
    expect(mapRule.add.rule.expr[1]).toEqual({
      dnat: { family: 'ip', addr: { map: { key: { payload: { protocol: 'tcp', field: 'dport' } }, data: { set: many.map((m) => [m.port, { concat: [m.addresses[0], m.remotePort] }]) } } } },
    });
    // At the threshold itself every port keeps its own rule.
    expect(toText(dnsProxyTable(many.slice(0, MAP_AFTER), 't'))).not.toContain('tcp dport map');
  });

});

describe('data path choice', () => {
  it('is auto (per line) in pod placement, user space in host placement or with debug lines, and explicit wins', () => {
    expect(dnsProxyOptions({}).dataPath).toBe('auto');
    expect(dnsProxyOptions({ EGRESS_DNS_PROXY_MODE: 'auto', EGRESS_DNS_PROXY_DEBUG: '1' }).dataPath).toBe('userspace');
    expect(dnsProxyOptions({ EGRESS_DNS_PROXY_MODE: 'kernel' }).dataPath).toBe('kernel');
    expect(dnsProxyOptions({ EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: '192.168.12.99/24' })).toMatchObject({ dataPath: 'userspace', bindSource: '192.168.12.99' });
    expect(dnsProxyOptions({ EGRESS_DNS_PROXY_DEBUG: '1' }).dataPath).toBe('userspace');
    expect(dnsProxyOptions({ EGRESS_DNS_PROXY_DEBUG: '1', EGRESS_DNS_PROXY_MODE: 'kernel' }).dataPath).toBe('kernel');
  });
  it('refuses the kernel path in host placement and unknown modes', () => {
    expect(() => dnsProxyOptions({ EGRESS_PLACEMENT: 'host', EGRESS_DNS_PROXY_MODE: 'kernel' })).toThrow("EGRESS_DNS_PROXY_MODE 'kernel' needs EGRESS_PLACEMENT 'pod'");
    expect(() => dnsProxyOptions({ EGRESS_DNS_PROXY_MODE: 'fast' })).toThrow(/EGRESS_DNS_PROXY_MODE 'fast' is invalid/);
  });
});
