/**
 * The DNS view in the firewall's table (src/plan/nft-firewall-view.ts):
 * learned addresses take the first-match decision (an earlier CIDR rule, an
 * earlier resolved name rule, or the earliest matched dnsName rule, exact or
 * wildcard), the learned map is looked up first and carries elements into a
 * replacement, the redirect and input guard join the table, wildcard rule
 * names match one leftmost label; the view's settings.
 */
import { describe, expect, it } from 'vitest';
import { firewallConfig, type FirewallConfig } from '../../src/config/firewall.js';
import { fullTableText } from '../../src/plan/nft.js';
import { firewallPlanInput, firewallTable } from '../../src/plan/nft-firewall.js';
import { learnedFromTable, learnedTargets, viewPorts, viewRuleNames } from '../../src/plan/nft-firewall-view.js';
import { compileMatcher } from '../../src/engines/firewall/dns-view/match.js';
import { errorOf } from './config-error.js';

type R = { type: 'Allow' | 'Deny'; to: { cidrSelector?: string; dnsName?: string } };
const allow = (to: string): R => ({ type: 'Allow', to: to.includes('/') ? { cidrSelector: to } : { dnsName: to } });
const deny = (to: string): R => ({ ...allow(to), type: 'Deny' });
const ENV = { EGRESS_FIREWALL_POLICY: '/cm', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24', EGRESS_FIREWALL_DNS_VIEW: '1' };
const doc = (rules: R[], namespace = 'project1') =>
  JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'default', namespace }, spec: { egress: rules } });
const config = (texts: string[], env: Record<string, string> = {}): FirewallConfig =>
  firewallConfig({ ...ENV, ...env }, () => texts.map((text, i) => ({ file: `p${i}.json`, text })));
const goto = (i: number, n: number) => ({ set: `p${i}_learned4`, verdict: { goto: `p${i}_r${n}` } });

describe('learned addresses: first match, as resolved ones', () => {
  const cfg = config([doc([allow('1.2.3.0/24'), allow('*.example.com'), deny('0.0.0.0/0')])]);
  const input = firewallPlanInput(cfg, ['203.0.113.53']);
  it('an address inside an earlier CIDR rule is that rule\'s; outside, the wildcard rule\'s', () => {
    expect(learnedTargets(input, ['*.example.com'], '1.2.3.4')).toEqual([goto(0, 1)]);
    expect(learnedTargets(input, ['*.example.com'], '5.6.7.8')).toEqual([goto(0, 2)]);
  });
  it('a CIDR rule after the name does not take it; a Deny name before an Allow CIDR denies', () => {
    const c = config([doc([deny('*.example.com'), allow('1.2.3.0/24')])]);
    expect(learnedTargets(firewallPlanInput(c, []), ['*.example.com'], '1.2.3.4')).toEqual([goto(0, 1)]);
  });
  it('the earliest of several matched rules decides; an earlier resolved name holding the address too', () => {
    const c = config([doc([deny('bad.com'), allow('www.example.com'), allow('*.example.com')])]);
    const plain = firewallPlanInput(c, []);
    expect(learnedTargets(plain, ['*.example.com', 'www.example.com'], '9.9.9.9')).toEqual([goto(0, 2)]);
    const resolved = firewallPlanInput(c, [], new Map([['bad.com', ['9.9.9.9']]]));
    expect(learnedTargets(resolved, ['*.example.com'], '9.9.9.9')).toEqual([goto(0, 1)]);
  });
  it('rule names of no policy, and families a policy has no sources of, learn nothing', () => {
    expect(learnedTargets(input, ['other.com'], '5.6.7.8')).toEqual([]);
    expect(learnedTargets(input, ['*.example.com'], '2001:db8::1')).toEqual([]);
  });
  it('each policy naming the rule gets its own element', () => {
    const c = config([doc([allow('www.example.com')]), doc([deny('*.example.com')], 'project2')]);
    expect(learnedTargets(firewallPlanInput(c, []), ['www.example.com', '*.example.com'], '5.6.7.8')).toEqual([goto(0, 1), goto(1, 1)]);
  });
});

describe('the table with the view', () => {
  const cfg = config([doc([allow('1.2.3.0/24'), allow('www.foo.com'), allow('*.example.com'), deny('0.0.0.0/0')])]);
  it('learned map (flags timeout) looked up first, then names and CIDRs; redirect and input guard chains', () => {
    const t = fullTableText(firewallTable(firewallPlanInput(cfg, ['203.0.113.53'])));
    expect(t).toContain('map p0_learned4 {\n\t\ttype ipv4_addr : verdict\n\t\tflags timeout\n\t}');
    expect(t).toContain('chain p0 {\n\t\tip daddr vmap @p0_learned4 comment "dns view: learned addresses"\n\t\tip daddr vmap @p0_names4\n\t\tip daddr vmap @p0_cidr4\n\t}');
    expect(t).toContain('chain dns_view {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n'
      + '\t\tip saddr 10.128.0.0/24 ip daddr 203.0.113.53 meta l4proto { tcp, udp } th dport 53 counter redirect to :15354 comment "dns view: 203.0.113.53"\n'
      + '\t\tip saddr 10.128.0.0/24 meta l4proto { tcp, udp } th dport 53 counter redirect to :15353 comment "dns view"\n\t}');
    expect(t).toContain('th dport { 15353, 15354 } ct status ! dnat counter drop');
  });
  it('carried learned elements are re-decided under the policy and keep their remaining time', () => {
    const learned = [{ address: '1.2.3.9', rules: ['*.example.com'], remainingSeconds: 12 }, { address: '5.6.7.8', rules: ['*.example.com'], remainingSeconds: 40 },
      { address: '7.7.7.7', rules: ['gone.com'], remainingSeconds: 40 }];
    const t = fullTableText(firewallTable(firewallPlanInput(cfg, [], new Map(), learned)));
    expect(t).toMatch(/map p0_learned4 \{\n\t\ttype ipv4_addr : verdict\n\t\tflags timeout\n\t\telements = \{ 1\.2\.3\.9 timeout 12s : goto p0_r1,\n\t+\s*5\.6\.7\.8 timeout 40s : goto p0_r3 \}/);
    expect(t).not.toContain('7.7.7.7');
  });
  it('without the view: no learned map, no redirect', () => {
    const off = config([doc([allow('www.foo.com')])], { EGRESS_FIREWALL_DNS_VIEW: '' });
    const t = fullTableText(firewallTable(firewallPlanInput(off, ['203.0.113.53'])));
    expect(t).not.toContain('learned');
    expect(t).not.toContain('dns_view');
  });
  it('forwarder ports: the catch-all, then one per node nameserver', () => {
    expect(viewPorts(5300, ['10.0.0.1', 'fe80::1%eth0', '10.0.0.1'])).toEqual({ port: 5300, byServer: [{ address: '10.0.0.1', port: 5301 }, { address: 'fe80::1', port: 5302 }] });
  });
});

describe('wildcard rule names', () => {
  const cfg = config([doc([allow('*.example.com'), allow('www.foo.com'), deny('*.example.com')])]);
  it('are watched once each, spelled as the matcher takes them, and match exactly one leftmost label', () => {
    const names = viewRuleNames(cfg.policies);
    expect(names).toEqual(['*.example.com', 'www.foo.com']);
    const m = compileMatcher(names);
    expect(m.match('a.example.com')).toEqual(['*.example.com']);
    expect(m.match('example.com')).toBeUndefined();
    expect(m.match('a.b.example.com')).toBeUndefined();
  });
});

describe('the view\'s settings', () => {
  it('defaults, and each read', () => {
    const d = config([doc([allow('www.foo.com')])]);
    expect([d.dnsView, d.dnsGraceS, d.dnsTimeoutMs, d.dnsPort]).toEqual([true, 30, 250, 15353]);
    const c = config([doc([allow('www.foo.com')])], { EGRESS_FIREWALL_DNS_GRACE: '5', EGRESS_FIREWALL_DNS_TIMEOUT: '100', EGRESS_FIREWALL_DNS_PORT: '5300' });
    expect([c.dnsGraceS, c.dnsTimeoutMs, c.dnsPort]).toEqual([5, 100, 5300]);
  });
  it('a bad value is one line naming it', () => {
    expect(errorOf(() => config([doc([allow('www.foo.com')])], { EGRESS_FIREWALL_DNS_PORT: '70000' }))).toBe(
      "EGRESS_FIREWALL_DNS_PORT '70000' is invalid, must be a number from 1 to 65000");
    expect(errorOf(() => config([doc([allow('*.foo.com')])], { EGRESS_FIREWALL_DNS_VIEW: '0' }))).toBe(
      'wildcard dns name is not supported as rule destination, *.foo.com');
  });
});

describe('learned elements of a running table (a restart carries them)', () => {
  it('read back with the rule name from the chain\'s comment; CIDR-decided and expiring ones dropped', () => {
    const items = [
      { map: { name: 'p0_learned4', elem: [[{ elem: { val: '5.6.7.8', timeout: 40, expires: 39 } }, { goto: { target: 'p0_r2' } }],
        [{ elem: { val: '1.2.3.4', timeout: 40, expires: 39 } }, { goto: { target: 'p0_r1' } }],
        [{ elem: { val: '9.9.9.9', timeout: 40, expires: 0 } }, { goto: { target: 'p0_r2' } }]] } },
      { map: { name: 'p0_names4', elem: [['7.7.7.7', { goto: { target: 'p0_r2' } }]] } },
      { rule: { chain: 'p0_r1', comment: 'rule 1 Allow cidrSelector 1.2.3.0/24' } },
      { rule: { chain: 'p0_r2', comment: 'rule 2 Allow dnsName *.example.com' } },
    ];
    expect(learnedFromTable(items)).toEqual([{ address: '5.6.7.8', rules: ['*.example.com'], remainingSeconds: 39 }]);
  });
});
