/**
 * networkPlan: pod placement is the OpenShift script (address, routes, one
 * default route, forwarding in the pod, gratuitous ARP); host placement keeps
 * the main table untouched (own table, policy rules, per-interface sysctls).
 */
import { describe, expect, it } from 'vitest';
import { parseGateway, parseSource } from '../../src/config/redirect.js';
import type { Mode } from '../../src/config/mode.js';
import { parseOptions } from '../../src/config/options.js';
import { describeOp, networkPlan } from '../../src/plan/network.js';

function plan(src: string, gw: string, env: Record<string, string> = {}, mode: Mode = 'legacy') {
  const source = parseSource(src);
  return networkPlan({ source, gateway: parseGateway(gw, source), mode, options: parseOptions(env) });
}
const lines = (ops: ReturnType<typeof plan>) => ops.map(describeOp);

describe('networkPlan, pod placement', () => {
  it('gateway inside EGRESS_SOURCE/len: no host route, exclusive default route in the main table', () => {
    const ops = plan('192.168.12.99/24', '192.168.12.1');
    expect(ops).toEqual([
      { op: 'link', name: 'macvlan0', master: undefined, mode: 'bridge', netns: undefined },
      { op: 'sysctl', key: 'net/ipv4/conf/macvlan0/arp_notify', value: '1', why: 'gratuitous ARP when the address comes up' },
      { op: 'address', dev: 'macvlan0', address: '192.168.12.99', prefix: 24, noPrefixRoute: false },
      { op: 'up', dev: 'macvlan0' },
      { op: 'route', family: 4, dev: 'macvlan0', dst: '0.0.0.0', dstLen: 0, gateway: '192.168.12.1', table: 254, exclusive: true },
      { op: 'sysctl', key: 'net/ipv4/conf/all/forwarding', value: '1', why: 'forward DNATed flows (the pod namespace is ours)' },
      { op: 'announce', dev: 'macvlan0', address: '192.168.12.99', family: 4 },
    ]);
  });
  it('a bare source IP (the image default) needs a host route to the gateway first', () => {
    expect(lines(plan('192.168.12.99', '192.168.12.1'))).toEqual([
      'ensure link macvlan0 (must exist)',
      'sysctl net.ipv4.conf.macvlan0.arp_notify=1  # gratuitous ARP when the address comes up',
      'address 192.168.12.99/32 on macvlan0',
      'link macvlan0 up',
      'route 192.168.12.1/32 dev macvlan0',
      'route default via 192.168.12.1 dev macvlan0',
      'sysctl net.ipv4.conf.all.forwarding=1  # forward DNATed flows (the pod namespace is ours)',
      'gratuitous ARP for 192.168.12.99 on macvlan0, again after 2 s',
    ]);
  });
  it('a gateway outside the source subnet also gets a host route', () => {
    expect(lines(plan('192.168.12.99/24', '192.168.13.1'))).toContain('route 192.168.13.1/32 dev macvlan0');
  });
  it('proxy modes do not forward (they terminate connections themselves)', () => {
    for (const mode of ['http-proxy', 'dns-proxy'] as const) {
      expect(plan('192.168.12.99/24', '192.168.12.1', {}, mode).filter((o) => o.op === 'sysctl' && o.key.endsWith('forwarding'))).toEqual([]);
    }
    expect(lines(plan('192.168.12.99/24', '192.168.12.1', {}, 'init'))).toContain(
      'sysctl net.ipv4.conf.all.forwarding=1  # forward DNATed flows (the pod namespace is ours)');
  });
  it('creates macvlan0 when asked, in a given mode, into a given namespace', () => {
    const ops = plan('192.168.12.99/24', '192.168.12.1', { EGRESS_MACVLAN_MASTER: 'eno1', EGRESS_MACVLAN_MODE: 'private', EGRESS_MACVLAN_NETNS: '/proc/7/ns/net' });
    expect(describeOp(ops[0]!)).toBe('ensure link macvlan0 (create macvlan mode private on eno1 into /proc/7/ns/net if missing)');
  });
  it('IPv6: ndisc_notify, ipv6 forwarding, gratuitous NA', () => {
    expect(lines(plan('2001:db8:1::99/64', '2001:db8:1::1'))).toEqual([
      'ensure link macvlan0 (must exist)',
      'sysctl net.ipv6.conf.macvlan0.ndisc_notify=1  # unsolicited NA when the address comes up',
      'address 2001:db8:1::99/64 on macvlan0',
      'link macvlan0 up',
      'route default via 2001:db8:1::1 dev macvlan0',
      'sysctl net.ipv6.conf.all.forwarding=1  # forward DNATed flows (the pod namespace is ours)',
      'gratuitous NA for 2001:db8:1::99 on macvlan0, again after 2 s',
    ]);
    expect(plan('2001:db8:1::99/64', '2001:db8:1::1').find((o) => o.op === 'route')).toMatchObject({ family: 6, dst: '::', dstLen: 0, exclusive: true });
  });
});

describe('networkPlan, host placement', () => {
  const host = { EGRESS_PLACEMENT: 'host' };
  it('own routing table, subnet route by network address, policy rules by source and mark, per-interface forwarding', () => {
    const ops = plan('192.168.12.99/24', '192.168.12.1', host);
    expect(lines(ops)).toEqual([
      'ensure link macvlan0 (must exist)',
      'sysctl net.ipv4.conf.macvlan0.arp_notify=1  # gratuitous ARP when the address comes up',
      'sysctl net.ipv4.conf.macvlan0.rp_filter=2  # loose reverse-path check for replies',
      'address 192.168.12.99/24 on macvlan0 noprefixroute',
      'link macvlan0 up',
      'route 192.168.12.0/24 dev macvlan0 table 230',
      'route default via 192.168.12.1 dev macvlan0 table 230',
      'rule priority 6900 from 192.168.12.99 lookup 230',
      'rule priority 6901 fwmark 0xe6 lookup 230',
      'sysctl net.ipv4.conf.eth0.forwarding=1  # forward DNATed flows from clients',
      'sysctl net.ipv4.conf.macvlan0.forwarding=1  # forward replies of DNATed flows',
      'gratuitous ARP for 192.168.12.99 on macvlan0, again after 2 s',
    ]);
    // Nothing lands in the main table, and the default route replaces nothing.
    expect(ops.filter((o) => o.op === 'route').map((o) => [o.table, o.exclusive])).toEqual([[230, undefined], [230, false]]);
  });
  it('honours EGRESS_ROUTE_TABLE, EGRESS_FWMARK and EGRESS_CLIENT_INTERFACE', () => {
    const l = lines(plan('192.168.12.99', '192.168.12.1', { ...host, EGRESS_ROUTE_TABLE: '100', EGRESS_FWMARK: '0x10', EGRESS_CLIENT_INTERFACE: 'br-ex' }));
    expect(l.filter((s) => s.startsWith('route') || s.startsWith('rule') || s.includes('forwarding'))).toEqual([
      'route 192.168.12.1/32 dev macvlan0 table 100',
      'route default via 192.168.12.1 dev macvlan0 table 100',
      'rule priority 6900 from 192.168.12.99 lookup 100',
      'rule priority 6901 fwmark 0x10 lookup 100',
      'sysctl net.ipv4.conf.br-ex.forwarding=1  # forward DNATed flows from clients',
      'sysctl net.ipv4.conf.macvlan0.forwarding=1  # forward replies of DNATed flows',
    ]);
  });
  it('the parent created on (EGRESS_MACVLAN_MASTER) does not answer ARP for EGRESS_SOURCE: only macvlan0 does, with its MAC', () => {
    const l = lines(plan('192.168.12.99/24', '192.168.12.1', { ...host, EGRESS_MACVLAN_MASTER: 'eth1' }));
    expect(l).toContain('sysctl net.ipv4.conf.eth1.arp_ignore=1  # only macvlan0 answers ARP for 192.168.12.99');
    expect(l).toContain("sysctl net.ipv4.conf.eth1.arp_announce=2  # eth1's ARP requests carry its own address, never 192.168.12.99");
    expect(lines(plan('192.168.12.99/24', '192.168.12.1', { EGRESS_MACVLAN_MASTER: 'eth1' })).some((l) => l.includes('arp_ignore'))).toBe(false);
  });
  it('IPv6 host placement: no rp_filter (IPv6 has none), same table and rules', () => {
    const l = lines(plan('2001:db8:1::99/64', '2001:db8:1::1', host));
    expect(l.some((s) => s.includes('rp_filter'))).toBe(false);
    expect(l).toContain('route 2001:db8:1::/64 dev macvlan0 table 230');
    expect(l).toContain('rule priority 6900 from 2001:db8:1::99 lookup 230');
  });
});
