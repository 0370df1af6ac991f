/**
 * After a policy change: cut the established flows the new policy denies and
 * the old one allowed (as openshift-sdn and OVN-Kubernetes do: a new Deny
 * means deny): their conntrack entries get CUT_MARK, so the firewall judges
 * their next packets like new ones and rejects them. Both verdicts use the names' current addresses, so a flow to
 * an address that only DNS dropped is judged the same before and after and
 * is never cut: DNS changes deny new flows only.
 */
import type { Logger } from '../../observe/log.js';
import type { Flow } from '../../apply/conntrack.js';
import { allowed, decide, type DecisionInput } from '../../plan/firewall-verdict.js';
import { CUT_MARK } from '../../plan/nft-firewall.js';

export interface FlowTable {
  list(): Promise<Flow[]>;
  /** Sets `bit` in the ct mark of the flows from src to dst. */
  mark(src: string, dst: string, bit: number): Promise<void>;
}

/** The (source, destination) pairs to cut: pure, for tests. */
export function flowsToCut(flows: readonly Flow[], before: DecisionInput, after: DecisionInput): { src: string; dst: string }[] {
  const out = new Map<string, { src: string; dst: string }>();
  for (const f of flows) {
    const key = `${f.src} ${f.dst}`;
    if (out.has(key)) continue;
    if (allowed(decide(before, f.src, f.dst, f.dport)) && !allowed(decide(after, f.src, f.dst, f.dport))) out.set(key, { src: f.src, dst: f.dst });
  }
  return [...out.values()];
}

export async function cutDenied(table: FlowTable, before: DecisionInput, after: DecisionInput, log: Logger): Promise<void> {
  try {
    const pairs = flowsToCut(await table.list(), before, after);
    for (const p of pairs) await table.mark(p.src, p.dst, CUT_MARK);
    if (pairs.length) log.info({ pairs: pairs.map((p) => `${p.src} -> ${p.dst}`) }, 'established flows now denied were cut');
  } catch (e) {
    log.error({ err: (e as Error).message }, 'cutting flows the new policy denies failed');
  }
}
