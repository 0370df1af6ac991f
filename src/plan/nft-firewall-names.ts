/**
 * A dnsName's addresses changed: the few element changes that bring the
 * running table up to date, as one transaction. Only the changed addresses
 * are touched (their named-set elements and their entries in the policy's
 * names map), so the cost follows the name's answer, not the policy's size,
 * and nothing else in the table (or conntrack) moves.
 */
import { Transaction, type Element } from './nft.js';
import {
  familyOf, nameAddressRule, namesMap, nameRules, nameSet, policyFamilies, ruleChain, type FirewallPlanInput,
} from './nft-firewall.js';

export interface NameUpdate {
  readonly tx: Transaction;
  readonly added: string[];
  readonly removed: string[];
}

/** `input.names` holds the addresses the table has now; `next` the name's new ones. */
export function nameUpdateTx(input: FirewallPlanInput, name: string, next: readonly string[], linear = false): NameUpdate {
  const before = input.names.get(name) ?? [];
  const added = next.filter((a) => !before.includes(a));
  const removed = before.filter((a) => !next.includes(a));
  const after = new Map(input.names);
  after.set(name, [...next]);
  const tx = new Transaction('inet', input.table);
  if (added.length === 0 && removed.length === 0) return { tx, added, removed };
  const changed = [...removed, ...added];
  input.policies.forEach((p, i) => {
    const rules = nameRules(p).filter((r) => r.to.name === name);
    if (rules.length === 0) return;
    for (const f of policyFamilies(p)) {
      const del = removed.filter((a) => familyOf(a) === f).map((key): Element => ({ key }));
      const add = added.filter((a) => familyOf(a) === f).map((key): Element => ({ key }));
      for (const r of rules) {
        const set = nameSet(i, r.n, f);
        if (del.length) tx.delete({ kind: 'element', set, map: false, elements: del });
        if (add.length) tx.add({ kind: 'element', set, map: false, elements: add });
      }
      if (linear) continue;
      // The names map: an address's deciding rule may change (another name still holds it, or it is new).
      const mapDel: Element[] = [];
      const mapAdd: Element[] = [];
      for (const a of changed) {
        if (familyOf(a) !== f) continue;
        const was = nameAddressRule(p, a, input.names);
        const now = nameAddressRule(p, a, after);
        if (was === now) continue;
        if (was !== undefined) mapDel.push({ key: a });
        if (now !== undefined) mapAdd.push({ key: a, verdict: { goto: ruleChain(i, now) } });
      }
      if (mapDel.length) tx.delete({ kind: 'element', set: namesMap(i, f), map: true, elements: mapDel });
      if (mapAdd.length) tx.add({ kind: 'element', set: namesMap(i, f), map: true, elements: mapAdd });
    }
  });
  return { tx, added, removed };
}

/** Every dnsName of the policies, with whether any policy using it needs AAAA records. */
export function policyNames(input: Pick<FirewallPlanInput, 'policies'>): Map<string, { ipv6: boolean }> {
  const out = new Map<string, { ipv6: boolean }>();
  for (const p of input.policies) {
    for (const r of nameRules(p)) {
      const ipv6 = (out.get(r.to.name)?.ipv6 ?? false) || p.sources.some((s) => s.family === 6);
      out.set(r.to.name, { ipv6 });
    }
  }
  return out;
}
