/**
 * `egress-router explain` verdict lines (src/plan/explain.ts): exact text,
 * as the issue and the firewall contract word them.
 */
import { describe, expect, it } from 'vitest';
import { firewallConfig } from '../../src/config/firewall.js';
import { parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { compilePolicy } from '../../src/engines/http-proxy/policy.js';
import { explainFirewall, explainHttp } from '../../src/plan/explain.js';
import { firewallPlanInput } from '../../src/plan/nft-firewall.js';

const rules = [{ type: 'Allow', to: { cidrSelector: '1.2.3.0/24' } }, { type: 'Allow', to: { dnsName: 'www.foo.com' } }, { type: 'Deny', to: { cidrSelector: '0.0.0.0/0' } }];
const text = (ns: string, egress = rules) => JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: `p-${ns}`, namespace: ns }, spec: { egress } });
const cfg = (texts: string[]) => firewallConfig({ EGRESS_FIREWALL_POLICY: '/p', EGRESS_FIREWALL_SOURCES: '10.128.0.0/24', EGRESS_FIREWALL_CLUSTER_CIDRS: '172.30.0.0/16' },
  () => texts.map((t, i) => ({ file: `f${i}`, text: t })));
const info = new Map([['www.foo.com', { addresses: ['203.0.113.26'], ttl: 28 }]]);
const input = (texts = [text('p1')]) => firewallPlanInput(cfg(texts), ['203.0.113.53'], new Map([['www.foo.com', ['203.0.113.26']]]));
const fw = (dst: string[], port?: number, texts?: string[]) => explainFirewall(input(texts), '10.128.0.20', dst, port, info);

describe('explain firewall', () => {
  it.each([
    [['203.0.113.26'], 443, 'rule 2 Allow dnsName www.foo.com (resolved 203.0.113.26, TTL 28 s) → allowed'],
    [['1.2.3.9'], 80, 'rule 1 Allow cidrSelector 1.2.3.0/24 → allowed'],
    [['8.8.8.8'], 80, 'rule 3 Deny cidrSelector 0.0.0.0/0 → denied'],
    [['2001:db8::1'], 80, 'no rule matched → allowed (default)'],
    [['172.30.0.10'], 443, 'destination in cluster CIDR 172.30.0.0/16: not filtered → allowed'],
    [['203.0.113.53'], 53, 'DNS to a node nameserver: not filtered → allowed'],
    [['203.0.113.53'], 80, 'rule 3 Deny cidrSelector 0.0.0.0/0 → denied'],
  ])('%j port %s: %s', (dst, port, line) => {
    expect(fw(dst, port)).toEqual([line]);
  });
  it('a name with addresses decided differently: one line per address', () => {
    expect(fw(['1.2.3.4', '9.9.9.9'])).toEqual(['1.2.3.4: rule 1 Allow cidrSelector 1.2.3.0/24 → allowed', '9.9.9.9: rule 3 Deny cidrSelector 0.0.0.0/0 → denied']);
  });
  it('a source in no policy, and a namespace with two policies', () => {
    expect(explainFirewall(input(), '10.1.0.1', ['8.8.8.8'], undefined, info)).toEqual(["source 10.1.0.1 is in no policy's sources: not filtered → allowed"]);
    expect(fw(['1.2.3.9'], 80, [text('p1'), text('p1')])).toEqual(['multiple EgressNetworkPolicies in same network namespace (p1) is not allowed; dropping all traffic → denied']);
  });
});

describe('explain http-proxy', () => {
  const p = compilePolicy(parseHttpProxyDestinations('!1.2.3.4\n*.foo.com\n10.0.0.0/8\n'));
  it.each([
    [{ kind: 'ip' as const, address: '1.2.3.4', family: 4 as const }, undefined, 'rule 1 !1.2.3.4 → denied'],
    [{ kind: 'ip' as const, address: '10.1.1.1', family: 4 as const }, undefined, 'rule 3 10.0.0.0/8 → allowed'],
    [{ kind: 'name' as const, name: 'a.foo.com' }, [{ address: '5.5.5.5', family: 4 as const }], 'rule 2 *.foo.com (resolved 5.5.5.5) → allowed'],
    [{ kind: 'name' as const, name: 'a.foo.com' }, [{ address: '1.2.3.4', family: 4 as const }], 'rule 1 !1.2.3.4 (resolved 1.2.3.4) → denied'],
    [{ kind: 'name' as const, name: 'b.example' }, [{ address: '5.5.5.5', family: 4 as const }], 'no rule matched (resolved 5.5.5.5) → denied (default)'],
    [{ kind: 'name' as const, name: 'b.example' }, [], 'b.example does not resolve: nothing to connect to'],
  ])('%j: %s', (host, resolved, line) => {
    expect(explainHttp(p, host, resolved)).toBe(line);
  });
  it('a trailing * allows the rest', () => {
    expect(explainHttp(compilePolicy(parseHttpProxyDestinations('!1.2.3.4\n*')), { kind: 'ip', address: '5.5.5.5', family: 4 })).toBe('no rule matched → allowed (* allows the rest)');
  });
});
