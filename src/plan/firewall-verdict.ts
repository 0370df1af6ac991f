/**
 * The firewall's decision for one source and destination address, walking
 * the rules in order: the reference semantics the nft table implements with
 * maps (nft-firewall.ts), used by `explain` and by the engine to find the
 * established flows a policy change now denies.
 */
import { cidrContains, ipFamily, unmapIp } from '../config/ip.js';
import type { Conflict, FwPolicy } from '../config/firewall.js';
import { targetText, type FwRule } from '../config/firewall-policy.js';
import type { FirewallPlanInput } from './nft-firewall.js';

export type FwDecision =
  | { readonly kind: 'not-filtered'; readonly why: string }
  | { readonly kind: 'conflict'; readonly conflict: Conflict }
  | { readonly kind: 'rule'; readonly policy: FwPolicy; readonly rule: FwRule }
  | { readonly kind: 'default'; readonly policy: FwPolicy };

export type DecisionInput = Pick<FirewallPlanInput, 'clusterCidrs' | 'policies' | 'conflicts' | 'nameservers' | 'names'>;

export function allowed(d: FwDecision): boolean {
  return d.kind === 'not-filtered' || d.kind === 'default' || (d.kind === 'rule' && d.rule.type === 'Allow');
}

/** `port` (any transport) only matters for DNS to a node nameserver. */
export function decide(input: DecisionInput, source: string, destination: string, port?: number): FwDecision {
  const s = unmapIp(source, ipFamily(source) || 4);
  const d = unmapIp(destination, ipFamily(destination) || 4);
  const inAny = (cidrs: FwPolicy['sources'], a: typeof s) => cidrs.some((c) => cidrContains(c, a.address, a.family));
  const cluster = input.clusterCidrs.find((c) => cidrContains(c, d.address, d.family));
  if (cluster) return { kind: 'not-filtered', why: `destination in cluster CIDR ${cluster.address}/${cluster.prefix}` };
  if (port === 53 && input.nameservers.some((n) => n.replace(/%.*$/, '') === d.address)) {
    return { kind: 'not-filtered', why: 'DNS to a node nameserver' };
  }
  const conflict = input.conflicts.find((c) => inAny(c.sources, s));
  if (conflict) return { kind: 'conflict', conflict };
  const policy = input.policies.find((p) => inAny(p.sources, s));
  if (!policy) return { kind: 'not-filtered', why: `source ${s.address} is in no policy's sources` };
  const rule = policy.rules.find((r) => (r.to.kind === 'cidr'
    ? cidrContains(r.to.cidr, d.address, d.family)
    : !r.to.wildcard && (input.names.get(r.to.name) ?? []).includes(d.address)));
  return rule ? { kind: 'rule', policy, rule } : { kind: 'default', policy };
}

/** What explain prints about a name rule's resolution. */
export interface NameInfo { readonly addresses: readonly string[]; readonly ttl?: number; readonly error?: string }

/**
 * One verdict line, e.g.
 * `rule 2 Allow dnsName www.foo.com (resolved 203.0.113.26, TTL 28 s) → allowed`.
 */
export function decisionText(d: FwDecision, info: ReadonlyMap<string, NameInfo> = new Map()): string {
  switch (d.kind) {
    case 'not-filtered': return `${d.why}: not filtered → allowed`;
    case 'conflict': return `${d.conflict.message} → denied`;
    case 'default': return 'no rule matched → allowed (default)';
    case 'rule': {
      const r = d.rule;
      let what = `rule ${r.n} ${r.type} ${targetText(r.to)}`;
      if (r.to.kind === 'dns') {
        const i = info.get(r.to.name);
        if (i) what += ` (resolved ${i.addresses.join(', ')}${i.ttl !== undefined ? `, TTL ${i.ttl} s` : ''})`;
      }
      return `${what} → ${r.type === 'Allow' ? 'allowed' : 'denied'}`;
    }
  }
}
