/**
 * The firewall's nft table (src/plan/nft-firewall.ts): the documentation's
 * example and its reverse as exact text (what `firewall render` prints and
 * nft accepts), first match with overlapping CIDRs and names checked against
 * the rule-by-rule reference (src/plan/firewall-verdict.ts) by reading the
 * rendered maps back, IPv6, the namespace rule, the linear rendering and
 * name updates as element transactions.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { firewallConfig, type FirewallConfig } from '../../src/config/firewall.js';
import { ipToBigInt, type Family } from '../../src/config/ip.js';
import { keyRange } from '../../src/plan/first-match.js';
import { decide, type FwDecision } from '../../src/plan/firewall-verdict.js';
import { fullTableText, replaceTableTx, txJson, txText, type FullTable } from '../../src/plan/nft.js';
import { firewallPlanInput, firewallTable, linearFirewallTable } from '../../src/plan/nft-firewall.js';
import { nameUpdateTx } from '../../src/plan/nft-firewall-names.js';

type R = { type: 'Allow' | 'Deny'; to: { cidrSelector?: string; dnsName?: string } };
const allow = (to: string): R => ({ type: 'Allow', to: to.includes('/') ? { cidrSelector: to } : { dnsName: to } });
const deny = (to: string): R => ({ ...allow(to), type: 'Deny' });
const ENV = { EGRESS_FIREWALL_POLICY: '/cm', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24', EGRESS_FIREWALL_INTERFACE: 'eth0',
  EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14,172.30.0.0/16', EGRESS_FIREWALL_MAX_RULES: '1000' };
const doc = (rules: R[], name = 'default', namespace = 'project1') =>
  JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name, namespace }, spec: { egress: rules } });
const config = (texts: string[], env: Record<string, string> = {}): FirewallConfig =>
  firewallConfig({ ...ENV, ...env }, () => texts.map((text, i) => ({ file: `p${i}.json`, text })));
const NAMES = new Map([['www.foo.com', ['1.2.3.7', '203.0.113.26']]]);
const input = (cfg: FirewallConfig, names: ReadonlyMap<string, readonly string[]> = NAMES) => firewallPlanInput(cfg, ['203.0.113.53'], names);

const FRAME = `table inet egress_router_firewall {
	set cluster4 {
		type ipv4_addr
		flags interval
		elements = { 10.128.0.0/14,
			     172.30.0.0/16 }
	}

	set dns4 {
		type ipv4_addr
		elements = { 203.0.113.53 }
	}

	map sources4 {
		type ipv4_addr : verdict
		flags interval
		elements = { 10.128.0.0/24 : goto p0 }
	}
`;
const FORWARD = `	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related ct mark & 0x80000000 == 0x00000000 accept
		oifname != "eth0" accept comment "not leaving through the external interface"
		ip daddr @cluster4 accept comment "cluster destinations are never filtered"
		ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept comment "DNS to the node nameservers"
		ip saddr vmap @sources4
	}

	chain refuse {
		meta l4proto tcp reject with tcp reset
		reject with icmpx admin-prohibited
	}

	chain p0 {
		ip daddr vmap @p0_names4
		ip daddr vmap @p0_cidr4
	}
`;
const DENY = (n: number, what: string) => `	chain p0_r${n} {
		counter goto refuse comment "rule ${n} Deny ${what}"
	}
`;
const ALLOW = (n: number, what: string) => `	chain p0_r${n} {
		counter accept comment "rule ${n} Allow ${what}"
	}
`;

describe('the documentation example', () => {
  it('Allow 1.2.3.0/24, Allow www.foo.com, Deny 0.0.0.0/0: the name\'s address inside rule 1 goes to rule 1', () => {
    const t = firewallTable(input(config([doc([allow('1.2.3.0/24'), allow('www.foo.com'), deny('0.0.0.0/0')])])));
    expect(fullTableText(t)).toBe(`${FRAME}
	map p0_names4 {
		type ipv4_addr : verdict
		elements = { 1.2.3.7 : goto p0_r1,
			     203.0.113.26 : goto p0_r2 }
	}

	map p0_cidr4 {
		type ipv4_addr : verdict
		flags interval
		elements = { 0.0.0.0-1.2.2.255 : goto p0_r3,
			     1.2.3.0/24 : goto p0_r1,
			     1.2.4.0-255.255.255.255 : goto p0_r3 }
	}

	set p0_r2_4 {
		type ipv4_addr
		elements = { 1.2.3.7,
			     203.0.113.26 }
	}

${FORWARD}
${ALLOW(1, 'cidrSelector 1.2.3.0/24')}
${ALLOW(2, 'dnsName www.foo.com')}
${DENY(3, 'cidrSelector 0.0.0.0/0')}}
`);
  });
  it('reversed (Deny 0.0.0.0/0 first): every external address goes to the deny rule, the name\'s too', () => {
    const t = firewallTable(input(config([doc([deny('0.0.0.0/0'), allow('1.2.3.0/24'), allow('www.foo.com')])])));
    expect(fullTableText(t)).toBe(`${FRAME}
	map p0_names4 {
		type ipv4_addr : verdict
		elements = { 1.2.3.7 : goto p0_r1,
			     203.0.113.26 : goto p0_r1 }
	}

	map p0_cidr4 {
		type ipv4_addr : verdict
		flags interval
		elements = { 0.0.0.0/0 : goto p0_r1 }
	}

	set p0_r3_4 {
		type ipv4_addr
		elements = { 1.2.3.7,
			     203.0.113.26 }
	}

${FORWARD}
${DENY(1, 'cidrSelector 0.0.0.0/0')}
${ALLOW(2, 'cidrSelector 1.2.3.0/24')}
${ALLOW(3, 'dnsName www.foo.com')}}
`);
  });
  it('the JSON batch replaces the table: chains exist before the maps that name them', () => {
    const batch = txJson(replaceTableTx(firewallTable(input(config([doc([allow('1.2.3.0/24'), allow('www.foo.com'), deny('0.0.0.0/0')])])))));
    const verbs = batch.nftables.slice(1).map((c) => { const [v, o] = Object.entries(c as object)[0]!; return `${v} ${Object.keys(o as object)[0]}`; });
    expect(verbs.slice(0, 3)).toEqual(['add table', 'delete table', 'add table']);
    expect(verbs.lastIndexOf('add chain')).toBeLessThan(verbs.indexOf('add map'));
    expect(batch.nftables).toContainEqual({ add: { map: { family: 'inet', table: 'egress_router_firewall', name: 'p0_cidr4', type: 'ipv4_addr', map: 'verdict', flags: ['interval'],
      elem: [[{ range: ['0.0.0.0', '1.2.2.255'] }, { goto: { target: 'p0_r3' } }], [{ prefix: { addr: '1.2.3.0', len: 24 } }, { goto: { target: 'p0_r1' } }],
        [{ range: ['1.2.4.0', '255.255.255.255'] }, { goto: { target: 'p0_r3' } }]] } } });
  });
});

/** The rule the rendered maps send `address` to, as the kernel would look it up (names map, then CIDR map). */
function viaMaps(t: FullTable, address: string, f: Family): number | undefined {
  const el = (name: string) => t.sets.find((s) => s.name === name)?.elements ?? [];
  const hit = el(`p0_names${f}`).find((e) => e.key === address)
    ?? el(`p0_cidr${f}`).find((e) => { const r = keyRange(e.key, f); const x = ipToBigInt(address, f); return r.lo <= x && x <= r.hi; });
  const v = hit?.verdict;
  return v && typeof v === 'object' && 'goto' in v ? Number(/_r(\d+)$/.exec(v.goto)![1]) : undefined;
}
const ruleOf = (d: FwDecision) => (d.kind === 'rule' ? d.rule.n : undefined);

describe('first match, precomputed', () => {
  it('overlapping CIDRs and names: whichever rule comes first decides', () => {
    const cfg = config([doc([deny('10.0.0.0/8'), allow('10.1.0.0/16'), allow('a.example'), deny('10.1.2.0/24'), allow('b.example'), allow('10.0.0.0/7'), deny('a.example')])]);
    const names = new Map([['a.example', ['10.1.2.3', '11.0.0.1', '9.9.9.9']], ['b.example', ['10.1.2.3', '11.0.0.1', '12.0.0.1']]]);
    const t = firewallTable(input(cfg, names));
    const expected: Record<string, number | undefined> = {
      '10.9.9.9': 1, '10.1.2.3': 1, '11.0.0.1': 3, '9.9.9.9': 3, '12.0.0.1': 5, '11.255.0.1': 6, '13.0.0.1': undefined,
    };
    for (const [a, n] of Object.entries(expected)) {
      expect(viaMaps(t, a, 4), a).toBe(n);
      expect(ruleOf(decide(input(cfg, names), '10.128.0.5', a)), a).toBe(n);
    }
  });
  it('property: the maps agree with walking the rules in order', () => {
    const octet = fc.constantFrom(0, 1, 2, 10, 128, 255);
    const addr = fc.tuple(fc.constantFrom(10, 11), octet, octet, octet).map((o) => o.join('.'));
    const cidr = fc.tuple(addr, fc.constantFrom(7, 8, 16, 24, 30, 32)).map(([a, len]) => {
      const n = ipToBigInt(a, 4) >> BigInt(32 - len) << BigInt(32 - len);
      return `${[24n, 16n, 8n, 0n].map((s) => (n >> s) & 255n).join('.')}/${len}`;
    });
    const rule = fc.tuple(fc.boolean(), fc.oneof(cidr, fc.constantFrom('a.example', 'b.example', 'c.example'))).map(([d, to]) => (d ? deny(to) : allow(to)));
    const names = fc.record({ 'a.example': fc.array(addr, { maxLength: 4 }), 'b.example': fc.array(addr, { maxLength: 4 }) });
    fc.assert(fc.property(fc.array(rule, { minLength: 1, maxLength: 12 }), names, fc.array(addr, { minLength: 1, maxLength: 8 }), (rules, ns, probes) => {
      const nm = new Map(Object.entries(ns).map(([k, v]) => [k, [...new Set(v)]]));
      const cfg = config([doc(rules)], { EGRESS_FIREWALL_CLUSTER_CIDRS: '' });
      const t = firewallTable(input(cfg, nm));
      for (const a of [...probes, ...nm.get('a.example')!]) expect(viaMaps(t, a, 4)).toBe(ruleOf(decide(input(cfg, nm), '10.128.0.9', a)));
    }), { numRuns: 300 });
  });
});

describe('IPv6', () => {
  it('IPv6 sources get ip6 maps; IPv6 CIDRs and AAAA addresses in them', () => {
    const cfg = config([doc([allow('2001:db8:1::/48'), allow('www.foo.com'), deny('::/0'), deny('0.0.0.0/0')])], { EGRESS_FIREWALL_SOURCES: 'fd00:128::/64' });
    const t = firewallTable(input(cfg, new Map([['www.foo.com', ['203.0.113.26', '2001:db8:2::26', '2001:db8:1::5']]])));
    const text = fullTableText(t);
    expect(text).toContain('elements = { fd00:128::/64 : goto p0 }');
    expect(text).toContain('ip6 daddr vmap @p0_names6\n\t\tip6 daddr vmap @p0_cidr6');
    expect(text).not.toContain('ip saddr vmap');
    expect(viaMaps(t, '2001:db8:2::26', 6)).toBe(2);
    expect(viaMaps(t, '2001:db8:1::5', 6)).toBe(1);
    expect(viaMaps(t, '2001:db8:3::1', 6)).toBe(3);
    expect(t.sets.find((s) => s.name === 'p0_r2_6')?.elements).toEqual([{ key: '2001:db8:2::26' }, { key: '2001:db8:1::5' }]);
  });
});

describe('several policies', () => {
  it('two non-empty policies in a namespace: its sources go to a drop chain', () => {
    const cfg = config([doc([deny('0.0.0.0/0')], 'a', 'p1'), doc([allow('1.2.3.0/24')], 'b', 'p1'), doc([deny('0.0.0.0/0')], 'c', 'p2')].map((d, i) =>
      i === 2 ? d.replace('"namespace":"p2"}', '"namespace":"p2","annotations":{"egress-router.io/sources":"10.129.0.0/24"}}') : d));
    const text = fullTableText(firewallTable(input(cfg)));
    expect(text).toContain('elements = { 10.128.0.0/24 : goto drop0,\n\t\t\t     10.129.0.0/24 : goto p0 }');
    expect(text).toContain('\tchain drop0 {\n\t\tcounter drop comment "multiple EgressNetworkPolicies in same network namespace (p1) is not allowed; dropping all traffic"\n\t}');
  });
});

describe('the linear rendering', () => {
  it('one rule per policy rule, in order, names through their sets', () => {
    const t = linearFirewallTable(input(config([doc([allow('1.2.3.0/24'), allow('www.foo.com'), deny('0.0.0.0/0')])])));
    expect(fullTableText(t)).toContain('\tchain p0 {\n\t\tip daddr 1.2.3.0/24 goto p0_r1\n\t\tip daddr @p0_r2_4 goto p0_r2\n\t\tip daddr 0.0.0.0/0 goto p0_r3\n\t}');
  });
});

describe('name updates', () => {
  const cfg = config([doc([allow('1.2.3.0/24'), allow('www.foo.com'), deny('0.0.0.0/0')])]);
  it('only the changed addresses, in the name set and the names map, as one transaction', () => {
    const u = nameUpdateTx(input(cfg), 'www.foo.com', ['1.2.3.7', '203.0.113.27']);
    expect(u).toMatchObject({ added: ['203.0.113.27'], removed: ['203.0.113.26'] });
    expect(txText(u.tx)).toBe(`delete element inet egress_router_firewall p0_r2_4 { 203.0.113.26 }
add element inet egress_router_firewall p0_r2_4 { 203.0.113.27 }
delete element inet egress_router_firewall p0_names4 { 203.0.113.26 }
add element inet egress_router_firewall p0_names4 { 203.0.113.27 : goto p0_r2 }
`);
  });
  it('costs the same with 1000 rules', () => {
    const many = [...Array.from({ length: 997 }, (_, i) => deny(`10.${64 + (i >> 8)}.${i & 255}.0/24`)), allow('www.foo.com'), deny('0.0.0.0/0')];
    const u = nameUpdateTx(input(config([doc(many)])), 'www.foo.com', ['1.2.3.7', '203.0.113.27']);
    expect(u.tx.size).toBe(4);
  });
  it('an unchanged answer is an empty transaction; the linear rendering touches only the set', () => {
    expect(nameUpdateTx(input(cfg), 'www.foo.com', ['1.2.3.7', '203.0.113.26']).tx.size).toBe(0);
    expect(nameUpdateTx(input(cfg), 'www.foo.com', ['9.9.9.9'], true).tx.ops.map((o) => o.obj.kind === 'element' && o.obj.set)).toEqual(['p0_r2_4', 'p0_r2_4']);
  });
});
