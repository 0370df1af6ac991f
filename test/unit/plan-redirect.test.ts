/**
 * The redirect ruleset (src/plan/redirect.ts) through the nft shim
 * (src/plan/nft.ts). Exact text, because `render` prints it and nft must
 * accept it (test/e2e/nft-check.test.ts checks the same shapes with nft -c).
 */
import { describe, expect, it } from 'vitest';
import { parseRedirectConfig } from '../../src/config/redirect.js';
import { parseOptions } from '../../src/config/options.js';
import { redirectTable } from '../../src/plan/redirect.js';
import { ruleCount, toReplaceBatch, toText } from '../../src/plan/nft.js';

const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const V6 = { EGRESS_SOURCE: '2001:db8:1::99/64', EGRESS_GATEWAY: '2001:db8:1::1' };

function table(env: Record<string, string>, forwardGuard?: boolean) {
  return redirectTable({ config: parseRedirectConfig(env), options: parseOptions(env), forwardGuard });
}

// nft prints tabs; the expected texts are written with them.
const PODV4_NO_FALLBACK = `table ip egress_router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" tcp dport 80 counter dnat to 203.0.113.25:80
		iifname "eth0" tcp dport 8080 counter dnat to 203.0.113.26:80
		iifname "eth0" udp dport 53 counter dnat to 203.0.113.27:53
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "macvlan0" counter snat to 192.168.12.99
	}

	chain input {
		type filter hook input priority filter; policy accept;
		iifname "eth0" ct state established,related accept
		iifname "eth0" meta l4proto tcp counter reject with tcp reset comment "unmapped port"
		iifname "eth0" meta l4proto udp counter reject with icmp type port-unreachable comment "unmapped port"
	}
}
`;

const PODV4_FALLBACK = `table ip egress_router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" tcp dport 80 counter dnat to 203.0.113.25:80
		iifname "eth0" counter dnat to 203.0.113.28 comment "fallback"
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "macvlan0" counter snat to 192.168.12.99
	}
}
`;

const HOSTV4 = `table ip egress_router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" fib daddr type local tcp dport 80 ct mark set 0x000000e6 counter dnat to 203.0.113.25:80
		iifname "eth0" fib daddr type local ct mark set 0x000000e6 counter dnat to 203.0.113.28 comment "fallback"
	}

	chain mark_flows {
		type filter hook prerouting priority -90; policy accept;
		ct direction original ct mark 0x000000e6 meta mark set 0x000000e6
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "macvlan0" counter snat to 192.168.12.99
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "macvlan0" ct mark 0x000000e6 accept
		iifname "macvlan0" counter drop comment "not an egress flow"
	}
}
`;

const PODV6 = `table ip6 egress_router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" tcp dport 80 counter dnat to [2001:db8:2::25]:8080
		iifname "eth0" udp dport 53 counter dnat to [2001:db8:2::26]:53
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "macvlan0" counter snat to 2001:db8:1::99
	}

	chain input {
		type filter hook input priority filter; policy accept;
		iifname "eth0" ct state established,related accept
		iifname "eth0" meta l4proto tcp counter reject with tcp reset comment "unmapped port"
		iifname "eth0" meta l4proto udp counter reject with icmpv6 type port-unreachable comment "unmapped port"
	}
}
`;

describe('redirectTable + toText', () => {
  it('pod placement without fallback: DNAT per mapping, SNAT, explicit refusal of unmapped ports', () => {
    const t = table({ ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25\n8080 tcp 203.0.113.26 80\n53 udp 203.0.113.27' });
    expect(toText(t)).toBe(PODV4_NO_FALLBACK);
    expect(ruleCount(t)).toBe(7);
  });
  it('pod placement with a fallback: no input chain (every port goes somewhere)', () => {
    expect(toText(table({ ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25\n203.0.113.28' }))).toBe(PODV4_FALLBACK);
  });
  it('host placement: only local traffic, conntrack mark, mark chain, forward guard of macvlan0', () => {
    expect(toText(table({ ...V4, EGRESS_PLACEMENT: 'host', EGRESS_DESTINATION: '80 tcp 203.0.113.25\n203.0.113.28' }))).toBe(HOSTV4);
  });
  it('host placement with the client-side guard: chain forward_guard also drops unmarked client traffic', () => {
    const t = table({ ...V4, EGRESS_PLACEMENT: 'host', EGRESS_DESTINATION: '80 tcp 203.0.113.25' }, true);
    expect(t.chains.map((c) => c.name)).toEqual(['prerouting', 'mark_flows', 'postrouting', 'forward_guard']);
    expect(toText(t).split('\n').slice(-9).join('\n')).toBe(`	chain forward_guard {
		type filter hook forward priority filter; policy accept;
		iifname "macvlan0" ct mark 0x000000e6 accept
		iifname "macvlan0" counter drop comment "not an egress flow"
		iifname "eth0" ct mark 0x000000e6 accept
		iifname "eth0" counter drop comment "not an egress flow"
	}
}
`);
  });
  it('IPv6: table ip6, bracketed DNAT targets, icmpv6 refusal', () => {
    expect(toText(table({ ...V6, EGRESS_DESTINATION: '80 tcp 2001:db8:2::25 8080\n53 udp 2001:DB8:2::26' }))).toBe(PODV6);
  });
  it('options rename the table and interfaces, and set the mark', () => {
    const text = toText(table({
      ...V4, EGRESS_PLACEMENT: 'host', EGRESS_NFT_TABLE: 'er2', EGRESS_CLIENT_INTERFACE: 'br0', EGRESS_FWMARK: '0x1234',
      EGRESS_DESTINATION: '203.0.113.28',
    }));
    expect(text.split('\n').slice(0, 4)).toEqual([
      'table ip er2 {', '\tchain prerouting {', '\t\ttype nat hook prerouting priority dstnat; policy accept;',
      '\t\tiifname "br0" fib daddr type local ct mark set 0x00001234 counter dnat to 203.0.113.28 comment "fallback"',
    ]);
  });
});

describe('toReplaceBatch', () => {
  it('replaces only our table atomically: add, delete, add, chains, then rules', () => {
    const b = toReplaceBatch(table({ ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25\n203.0.113.28' }));
    const tbl = { family: 'ip', name: 'egress_router' };
    expect(b).toEqual({
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        { add: { table: tbl } },
        { delete: { table: tbl } },
        { add: { table: tbl } },
        { add: { chain: { ...tbl, table: 'egress_router', name: 'prerouting', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' } } },
        { add: { chain: { ...tbl, table: 'egress_router', name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' } } },
        { add: { rule: { family: 'ip', table: 'egress_router', chain: 'prerouting', expr: [
          { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth0' } },
          { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 80 } },
          { counter: null },
          { dnat: { addr: '203.0.113.25', port: 80 } },
        ] } } },
        { add: { rule: { family: 'ip', table: 'egress_router', chain: 'prerouting', comment: 'fallback', expr: [
          { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth0' } },
          { counter: null },
          { dnat: { addr: '203.0.113.28' } },
        ] } } },
        { add: { rule: { family: 'ip', table: 'egress_router', chain: 'postrouting', expr: [
          { match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'macvlan0' } },
          { counter: null },
          { snat: { addr: '192.168.12.99' } },
        ] } } },
      ],
    });
  });
  it('never touches a table it does not own (no flush, no ip nat)', () => {
    const b = toReplaceBatch(table({ ...V6, EGRESS_PLACEMENT: 'host', EGRESS_DESTINATION: '80 tcp 2001:db8:2::25' }, true));
    const json = JSON.stringify(b);
    expect(json).not.toContain('flush');
    const tables = new Set(b.nftables.flatMap((c) => Object.values(c as object)).map((v) => JSON.stringify((v as { table?: unknown }).table ?? null)));
    // Each command names our table, either as the object or by name.
    expect([...tables].filter((t) => t !== 'null' && t !== '"egress_router"')).toEqual(['{"family":"ip6","name":"egress_router"}']);
  });
  it('the text and the JSON carry the same rules, piece for piece', () => {
    const t = table({ ...V6, EGRESS_DESTINATION: '80 tcp 2001:db8:2::25 8080\n53 udp 2001:db8:2::26' });
    const rules = toReplaceBatch(t).nftables.filter((c) => 'add' in (c as object) && 'rule' in (c as { add: object }).add);
    expect(rules).toHaveLength(ruleCount(t));
    expect(rules[0]).toEqual({ add: { rule: { family: 'ip6', table: 'egress_router', chain: 'prerouting', expr: [
      { match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth0' } },
      { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 80 } },
      { counter: null },
      { dnat: { addr: '2001:db8:2::25', port: 8080 } },
    ] } } });
  });
});
