/**
 * The egress firewall as one nft table (inet egress_router_firewall), pure.
 *
 * Design: per packet the cost is flat, whatever the number of rules.
 *   forward (hook forward, priority filter):
 *     established/related → accept, unless a policy change marked the flow
 *       as cut (CUT_MARK): only new and cut flows are judged;
 *     not leaving through the interface, to a cluster CIDR, or DNS to a node
 *       nameserver → accept;
 *     `ip saddr vmap @sources4` → goto the source's policy chain `p<i>`
 *       (an interval map: the first policy listing a source wins).
 *   p<i>: `ip daddr vmap @p<i>_names4`, then `ip daddr vmap @p<i>_cidr4`
 *     (and ip6 twins), each value `goto p<i>_r<n>`: the chain of the rule that
 *     decides, holding its counter and verdict; no match falls off → allowed.
 *   p<i>_cidr4: the CIDR rules' first match precomputed as disjoint spans
 *     (first-match.ts), one interval-map lookup for any number of rules.
 *   p<i>_names4: every address of every dnsName rule, mapped to the rule
 *     that really decides it: min(first name rule holding the address,
 *     first CIDR rule covering it). So a name's address inside an earlier
 *     CIDR rule goes to that rule, and inside a later one to the name's, with
 *     two lookups per new flow. A name's update changes only its addresses'
 *     elements (nameUpdateTx): the same few elements with 5 rules or 1000.
 *   p<i>_r<n>_4/_6: each name rule's addresses as a named set, updated in
 *     the same transaction (what `nft list` shows per name, and the data path
 *     of the linear rendering).
 * Deny = the rule's counter, then the shared `reject` chain (tcp reset,
 * icmpx admin-prohibited): one rule per policy rule keeps a 1000-rule apply small.
 * linearFirewallTable renders the same policy naively, one rule per policy
 * rule, for the benchmark's comparison.
 */
import { ipToBigInt, type Cidr, type Family } from '../config/ip.js';
import type { Conflict, FirewallConfig, FwPolicy } from '../config/firewall.js';
import { targetText, type FwRule } from '../config/firewall-policy.js';
import {
  accept, counter, ctMarkBitsClear, ctState, drop, l4proto, l4protoIn, oifnameNot, rejectAdminProhibited, rejectTcpReset, thDport,
  addrIs, inSet, verdictPiece, vmap, type Chain, type Element, type FullTable, type NftSet, type RegularChain, type Rule,
} from './nft.js';
import { cidrRange, firstMatchSpans, lookupSpan, spanKey, type Span } from './first-match.js';
import { learnedMapSet, viewChains, viewPorts, type LearnedRecord, type ViewPlan } from './nft-firewall-view.js';

export interface FirewallPlanInput {
  readonly table: string;
  readonly interface: string | undefined;
  readonly clusterCidrs: readonly Cidr[];
  readonly policies: readonly FwPolicy[];
  readonly conflicts: readonly Conflict[];
  /** Nameservers of the node's resolv.conf: DNS to them is always allowed. */
  readonly nameservers: readonly string[];
  /** Current addresses of each dnsName; a name not resolved yet has none. */
  readonly names: ReadonlyMap<string, readonly string[]>;
  /** The DNS view (issue 11): its ports, learned maps and learned elements carried over (nft-firewall-view.ts). */
  readonly view?: ViewPlan;
}

export function firewallPlanInput(cfg: FirewallConfig, nameservers: readonly string[], names: ReadonlyMap<string, readonly string[]> = new Map(),
  learned?: readonly LearnedRecord[]): FirewallPlanInput {
  const view = cfg.dnsView ? { ...viewPorts(cfg.dnsPort, nameservers), learned } : undefined;
  return { table: cfg.table, interface: cfg.interface, clusterCidrs: cfg.clusterCidrs, policies: cfg.policies,
    conflicts: cfg.conflicts, nameservers, names, view };
}

/**
 * The conntrack mark bit of flows a policy change cut (engines/firewall/cut.ts):
 * their packets are judged again, so the ones the new policy denies are
 * rejected, in whichever direction the next packet goes. One bit, so marks
 * others set on the same flows keep their other bits.
 */
export const CUT_MARK = 0x80000000;

export const FAMILIES: readonly Family[] = [4, 6];
/** Denied flows end here: TCP reset, else ICMP(v6) administratively prohibited. */
export const REJECT_CHAIN = 'refuse'; // 'reject' is an nft keyword
const P = (f: Family) => (f === 4 ? 'ip' : 'ip6');
export const familyOf = (a: string): Family => (a.includes(':') ? 6 : 4);
export const policyChain = (i: number) => `p${i}`;
export const ruleChain = (i: number, n: number) => `p${i}_r${n}`;
export const nameSet = (i: number, n: number, f: Family) => `p${i}_r${n}_${f}`;
export const namesMap = (i: number, f: Family) => `p${i}_names${f}`;
export const cidrMap = (i: number, f: Family) => `p${i}_cidr${f}`;

export const policyFamilies = (p: FwPolicy): Family[] => FAMILIES.filter((f) => p.sources.some((s) => s.family === f));
export const nameRules = (p: FwPolicy): (FwRule & { to: { kind: 'dns'; name: string } })[] =>
  p.rules.filter((r): r is FwRule & { to: { kind: 'dns'; name: string; wildcard: false } } => r.to.kind === 'dns' && !r.to.wildcard);

const SPANS = new WeakMap<FwPolicy, Map<Family, Span[]>>();

/** The CIDR rules' first-match spans for one family (memoised per policy object). */
export function cidrSpans(p: FwPolicy, f: Family): Span[] {
  let m = SPANS.get(p);
  if (!m) SPANS.set(p, (m = new Map()));
  let s = m.get(f);
  if (!s) {
    const ranges = p.rules.flatMap((r) => (r.to.kind === 'cidr' && r.to.cidr.family === f ? [{ ...cidrRange(r.to.cidr), value: r.n }] : []));
    m.set(f, (s = firstMatchSpans(ranges)));
  }
  return s;
}

/** The rule deciding a name's address: the earlier of its first name rule and its first covering CIDR rule. */
export function nameAddressRule(p: FwPolicy, address: string, names: ReadonlyMap<string, readonly string[]>): number | undefined {
  const byName = nameRules(p).find((r) => names.get(r.to.name)?.includes(address));
  if (!byName) return undefined;
  const f = familyOf(address);
  const byCidr = lookupSpan(cidrSpans(p, f), ipToBigInt(address, f));
  return byCidr !== undefined && byCidr < byName.n ? byCidr : byName.n;
}

export function namesMapElements(i: number, p: FwPolicy, f: Family, names: ReadonlyMap<string, readonly string[]>): Element[] {
  const seen = new Set<string>();
  const out: Element[] = [];
  for (const r of nameRules(p)) {
    for (const a of names.get(r.to.name) ?? []) {
      if (familyOf(a) !== f || seen.has(a)) continue;
      seen.add(a);
      out.push({ key: a, verdict: { goto: ruleChain(i, nameAddressRule(p, a, names)!) } });
    }
  }
  return out;
}

function ruleChains(i: number, p: FwPolicy): RegularChain[] {
  return p.rules.map((r) => {
    const comment = `rule ${r.n} ${r.type} ${targetText(r.to)}`.slice(0, 120);
    // One rule per policy rule: its counter and verdict (a deny goes on to the shared reject chain).
    const rules: Rule[] = [{ pieces: [counter, r.type === 'Allow' ? accept : verdictPiece({ goto: REJECT_CHAIN })], comment }];
    return { name: ruleChain(i, r.n), rules };
  });
}

function nameSets(i: number, p: FwPolicy, names: ReadonlyMap<string, readonly string[]>): NftSet[] {
  return nameRules(p).flatMap((r) => policyFamilies(p).map((f): NftSet => ({
    name: nameSet(i, r.n, f), type: f === 4 ? 'ipv4_addr' : 'ipv6_addr',
    elements: (names.get(r.to.name) ?? []).filter((a) => familyOf(a) === f).map((key) => ({ key })),
  })));
}

const addrType = (f: Family): 'ipv4_addr' | 'ipv6_addr' => (f === 4 ? 'ipv4_addr' : 'ipv6_addr');

/** Sets, maps and the forward chain shared by both renderings. */
function frame(input: FirewallPlanInput): { sets: NftSet[]; forward: Chain; drops: RegularChain[] } {
  const sets: NftSet[] = [];
  const rules: Rule[] = [{ pieces: [ctState(['established', 'related']), ctMarkBitsClear(CUT_MARK), accept] }];
  if (input.interface) rules.push({ pieces: [oifnameNot(input.interface), accept], comment: 'not leaving through the external interface' });
  for (const f of FAMILIES) {
    const cluster = input.clusterCidrs.filter((c) => c.family === f);
    if (cluster.length === 0) continue;
    const spans = firstMatchSpans(cluster.map((c) => ({ ...cidrRange(c), value: 0 })));
    sets.push({ name: `cluster${f}`, type: addrType(f), flags: ['interval'], elements: spans.map((s) => ({ key: spanKey(s.lo, s.hi, f) })) });
    rules.push({ pieces: [inSet(P(f), 'daddr', `cluster${f}`), accept], comment: 'cluster destinations are never filtered' });
  }
  for (const f of FAMILIES) {
    const ns = [...new Set(input.nameservers.map((a) => a.replace(/%.*$/, '')).filter((a) => familyOf(a) === f))];
    if (ns.length === 0) continue;
    sets.push({ name: `dns${f}`, type: addrType(f), elements: ns.map((key) => ({ key })) });
    rules.push({ pieces: [inSet(P(f), 'daddr', `dns${f}`), l4protoIn(['tcp', 'udp']), thDport(53), accept], comment: 'DNS to the node nameservers' });
  }
  // Sources: namespaces in conflict first (their traffic is dropped), then each policy; the first listing a source wins.
  const drops = input.conflicts.map((c, k): RegularChain => ({ name: `drop${k}`, rules: [{ pieces: [counter, drop], comment: c.message.slice(0, 120) }] }));
  const owners = [
    ...input.conflicts.map((c, k) => ({ sources: c.sources, chain: `drop${k}` })),
    ...input.policies.map((p, i) => ({ sources: p.sources, chain: policyChain(i) })),
  ];
  for (const f of FAMILIES) {
    const ranges = owners.flatMap((o, k) => o.sources.filter((s) => s.family === f).map((s) => ({ ...cidrRange(s), value: k })));
    if (ranges.length === 0) continue;
    const elements = firstMatchSpans(ranges).map((s): Element => ({ key: spanKey(s.lo, s.hi, f), verdict: { goto: owners[s.value]!.chain } }));
    sets.push({ name: `sources${f}`, type: addrType(f), verdictMap: true, flags: ['interval'], elements });
    rules.push({ pieces: [vmap(P(f), 'saddr', `sources${f}`)] });
  }
  const reject: RegularChain = { name: REJECT_CHAIN, rules: [{ pieces: [l4proto('tcp'), rejectTcpReset] }, { pieces: [rejectAdminProhibited] }] };
  return { sets, forward: { name: 'forward', type: 'filter', hook: 'forward', priority: 0, rules }, drops: [reject, ...drops] };
}

export function firewallTable(input: FirewallPlanInput): FullTable {
  const { sets, forward, drops } = frame(input);
  const chains: (Chain | RegularChain)[] = [forward, ...drops, ...viewChains(input)];
  input.policies.forEach((p, i) => {
    const rules: Rule[] = learnedLookups(input, i, sets);
    const hasNames = nameRules(p).length > 0;
    for (const f of policyFamilies(p)) {
      if (hasNames) {
        sets.push({ name: namesMap(i, f), type: addrType(f), verdictMap: true, elements: namesMapElements(i, p, f, input.names) });
        rules.push({ pieces: [vmap(P(f), 'daddr', namesMap(i, f))] });
      }
      const spans = cidrSpans(p, f);
      if (spans.length === 0) continue;
      sets.push({ name: cidrMap(i, f), type: addrType(f), verdictMap: true, flags: ['interval'],
        elements: spans.map((s) => ({ key: spanKey(s.lo, s.hi, f), verdict: { goto: ruleChain(i, s.value) } })) });
      rules.push({ pieces: [vmap(P(f), 'daddr', cidrMap(i, f))] });
    }
    sets.push(...nameSets(i, p, input.names));
    chains.push({ name: policyChain(i), rules }, ...ruleChains(i, p));
  });
  return { family: 'inet', name: input.table, sets, chains };
}

/** The naive rendering: each policy rule is one rule per family, walked in order. */
export function linearFirewallTable(input: FirewallPlanInput): FullTable {
  const { sets, forward, drops } = frame(input);
  const chains: (Chain | RegularChain)[] = [forward, ...drops, ...viewChains(input)];
  input.policies.forEach((p, i) => {
    const rules: Rule[] = learnedLookups(input, i, sets);
    for (const r of p.rules) {
      for (const f of policyFamilies(p)) {
        const to = r.to;
        if (to.kind === 'cidr' && to.cidr.family !== f) continue;
        if (to.kind === 'dns' && to.wildcard) continue;
        const match = to.kind === 'cidr' ? addrIs(P(f), 'daddr', `${to.cidr.address}/${to.cidr.prefix}`) : inSet(P(f), 'daddr', nameSet(i, r.n, f));
        rules.push({ pieces: [match, verdictPiece({ goto: ruleChain(i, r.n) })] });
      }
    }
    sets.push(...nameSets(i, p, input.names));
    chains.push({ name: policyChain(i), rules }, ...ruleChains(i, p));
  });
  return { family: 'inet', name: input.table, sets, chains };
}

/** With the DNS view: the policy's learned maps, looked up first (their verdicts are already first-match). */
function learnedLookups(input: FirewallPlanInput, i: number, sets: NftSet[]): Rule[] {
  const rules: Rule[] = [];
  for (const f of policyFamilies(input.policies[i]!)) {
    const m = learnedMapSet(input, i, f);
    if (!m) continue;
    sets.push(m);
    rules.push({ pieces: [vmap(P(f), 'daddr', m.name)], comment: 'dns view: learned addresses' });
  }
  return rules;
}

export function countElements(t: FullTable): number {
  return t.sets.reduce((n, s) => n + (s.elements?.length ?? 0), 0);
}
