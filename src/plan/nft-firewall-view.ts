/**
 * The DNS view's part of the firewall table (issue 11), pure.
 *
 * Learned addresses take the same first-match decision as the resolver's:
 * per policy and family a verdict map `p<i>_learned4` (flags timeout) maps a
 * learned address to the chain of the rule that decides it, precomputed when
 * the address is learned: min(first dnsName rule, exact or wildcard, whose
 * name the answer matched; first CIDR rule covering the address; first
 * resolver-held name rule holding it). The policy chain looks it up first
 * (`ip daddr vmap @p<i>_learned4`, then the names map, then the CIDR map):
 * one more map lookup per new flow, whatever the number of rules, and a
 * learned address inside an earlier CIDR rule goes to the CIDR rule, as a
 * resolved one does. The map's elements expire (TTL + grace); the resolver's
 * map keeps its own, so neither removes what the other still needs.
 *
 * Also: the redirect of the sources' DNS to the forwarder ports (a nat
 * prerouting chain) and the input guard (the ports take redirected flows
 * only), both in the firewall's table, so one transaction sets up all of it.
 */
import { ipToBigInt, type Family } from '../config/ip.js';
import type { FwPolicy } from '../config/firewall.js';
import type { FwTarget } from '../config/firewall-policy.js';
import type { Element, NftSet, RegularChain, Verdict } from './nft-tx.js';
import type { Chain, Rule } from './nft.js';
import { dnsViewInputGuard, dnsViewRedirectRules } from './nft-dns-view.js';
import { lookupSpan } from './first-match.js';
import { cidrSpans, familyOf, nameRules, policyFamilies, ruleChain, type FirewallPlanInput } from './nft-firewall.js';

export const learnedMap = (i: number, f: Family) => `p${i}_learned${f}`;
export const VIEW_NAT_CHAIN = 'dns_view';
export const VIEW_INPUT_CHAIN = 'dns_view_input';

/** A dnsName rule's name as the view's matcher takes it (`*.example.com` for a wildcard). */
export const viewRuleName = (t: FwTarget & { kind: 'dns' }) => (t.wildcard ? `*.${t.name}` : t.name);

/** Every dnsName rule name of the policies (exact and wildcard), once. */
export function viewRuleNames(policies: readonly FwPolicy[]): string[] {
  return [...new Set(policies.flatMap((p) => p.rules.flatMap((r) => (r.to.kind === 'dns' ? [viewRuleName(r.to)] : []))))];
}

/** The forwarder ports: the catch-all at `port` (to the node's nameservers), then one per node nameserver. */
export interface ViewPorts { readonly port: number; readonly byServer: ReadonlyArray<{ readonly address: string; readonly port: number }> }

export function viewPorts(port: number, nameservers: readonly string[]): ViewPorts {
  const ns = [...new Set(nameservers.map((a) => a.replace(/%.*$/, '')))];
  return { port, byServer: ns.map((address, k) => ({ address, port: port + 1 + k })) };
}

/** An address the view learned: for which rule names, and how long it has left. */
export interface LearnedRecord { readonly address: string; readonly rules: readonly string[]; readonly remainingSeconds: number }

export interface ViewPlan extends ViewPorts {
  /** Learned elements carried into a table replacement. */
  readonly learned?: readonly LearnedRecord[];
}

export interface LearnedTarget { readonly set: string; readonly verdict: Verdict }

/** Where a learned address goes, per policy whose dnsName rules the answer matched: its learned map, with the deciding rule. */
export function learnedTargets(input: FirewallPlanInput, rules: readonly string[], address: string): LearnedTarget[] {
  const f = familyOf(address);
  const want = new Set(rules);
  const out: LearnedTarget[] = [];
  input.policies.forEach((p, i) => {
    if (!policyFamilies(p).includes(f)) return;
    const byView = p.rules.find((r) => r.to.kind === 'dns' && want.has(viewRuleName(r.to)));
    if (!byView) return;
    let n = byView.n;
    const byCidr = lookupSpan(cidrSpans(p, f), ipToBigInt(address, f));
    if (byCidr !== undefined && byCidr < n) n = byCidr;
    const byName = nameRules(p).find((r) => r.n < n && input.names.get(r.to.name)?.includes(address));
    if (byName) n = byName.n;
    out.push({ set: learnedMap(i, f), verdict: { goto: ruleChain(i, n) } });
  });
  return out;
}

const hasViewRules = (p: FwPolicy) => p.rules.some((r) => r.to.kind === 'dns');

/** The learned map of policy i, family f (with carried elements), and the rule that looks it up; none without dnsName rules. */
export function learnedMapSet(input: FirewallPlanInput, i: number, f: Family): NftSet | undefined {
  const p = input.policies[i]!;
  if (!input.view || !hasViewRules(p)) return undefined;
  const name = learnedMap(i, f);
  const elements: Element[] = [];
  for (const l of input.view.learned ?? []) {
    if (familyOf(l.address) !== f || l.remainingSeconds < 1) continue;
    const t = learnedTargets(input, l.rules, l.address).find((x) => x.set === name);
    if (t && !elements.some((e) => e.key === l.address)) elements.push({ key: l.address, verdict: t.verdict, timeout: Math.ceil(l.remainingSeconds) });
  }
  return { name, type: f === 4 ? 'ipv4_addr' : 'ipv6_addr', verdictMap: true, flags: ['timeout'], elements };
}

/** The redirect (nat prerouting, priority dstnat) and the input guard, for the view's ports. */
export function viewChains(input: FirewallPlanInput): Array<Chain | RegularChain> {
  const v = input.view;
  if (!v) return [];
  const sources = { 4: [] as string[], 6: [] as string[] };
  for (const p of input.policies) for (const s of p.sources) sources[s.family].push(`${s.address}/${s.prefix}`);
  if (sources[4].length + sources[6].length === 0) return [];
  const redirect: Rule[] = dnsViewRedirectRules({ sources: { 4: [...new Set(sources[4])], 6: [...new Set(sources[6])] }, port: v.port, byServer: v.byServer });
  return [
    { name: VIEW_NAT_CHAIN, type: 'nat', hook: 'prerouting', priority: -100, rules: redirect },
    { name: VIEW_INPUT_CHAIN, type: 'filter', hook: 'input', priority: 0, rules: dnsViewInputGuard([v.port, ...v.byServer.map((s) => s.port)]) },
  ];
}

/**
 * Learned elements of a running table (`nft -j list table`), for a restarted
 * daemon to carry them into its first table: each learned-map element with
 * its remaining time, and the rule name read back from the comment of the
 * chain it goes to (`rule N Allow dnsName *.example.com`). Elements a CIDR
 * rule decided have no name to carry: the new table's CIDR map decides them
 * the same way.
 */
export function learnedFromTable(items: readonly unknown[]): LearnedRecord[] {
  type Item = { rule?: { chain?: string; comment?: string }; map?: { name?: string; elem?: unknown[] } };
  const nameOf = new Map<string, string>();
  for (const it of items as Item[]) {
    const m = it.rule?.comment?.match(/^rule \d+ (?:Allow|Deny) dnsName (\S+)$/);
    if (m && it.rule?.chain) nameOf.set(it.rule.chain, m[1]!);
  }
  const out: LearnedRecord[] = [];
  for (const it of items as Item[]) {
    if (!it.map?.name || !/^p\d+_learned[46]$/.test(it.map.name)) continue;
    for (const e of it.map.elem ?? []) {
      const [k, v] = (Array.isArray(e) ? e : []) as [{ elem?: { val?: unknown; expires?: unknown } } | undefined, { goto?: { target?: string } } | undefined];
      const address = k?.elem?.val;
      const secs = Number(k?.elem?.expires ?? 0);
      const rule = v?.goto?.target && nameOf.get(v.goto.target);
      if (typeof address === 'string' && rule && secs >= 1) out.push({ address, rules: [rule], remainingSeconds: secs });
    }
  }
  return out;
}
