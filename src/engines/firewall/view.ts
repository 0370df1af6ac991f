/**
 * The firewall's side of the DNS view (issue 11): starts the view on the
 * ports the plan redirects to, tells it which rule names to watch and where
 * an answer's addresses go (the policies' learned maps with the first-match
 * rule, plan/nft-firewall-view.ts), remembers which rule names each learned
 * address came from (so a table replacement re-adds it under the new policy),
 * and sums the view's counters as plain numbers.
 */
import type { FirewallConfig } from '../../config/firewall.js';
import type { Logger } from '../../observe/log.js';
import type { FirewallPlanInput } from '../../plan/nft-firewall.js';
import type { Transaction } from '../../plan/nft-tx.js';
import { learnedTargets, viewPorts, viewRuleNames, type LearnedRecord } from '../../plan/nft-firewall-view.js';
import type { DnsViewConfig } from './dns-view/view.js';
import type { DnsViewStats } from './dns-view/stats.js';
import type { LearnedElement } from '../../plan/nft-dns-view.js';

/** What the engine needs of a DnsView (dns-view/view.ts); tests give a fake. */
export interface ViewHandle {
  setPolicy(ruleNames: readonly string[], setsOf: DnsViewConfig['setsOf']): void;
  resetLearned(): void;
  learned(): Array<LearnedElement & { readonly remainingSeconds: number }>;
  readonly stats: Record<number, Readonly<DnsViewStats>>;
  readonly learner?: { readonly counts: { transactions: number; skipped: number } };
  close(): Promise<void>;
}
export type ViewStarter = (c: DnsViewConfig) => Promise<ViewHandle>;

/** Bound on the address → rule names record (it follows the learner's live elements, pruned at each table build). */
const MAX_RECORDS = 200_000;

export class FirewallView {
  private constructor(readonly handle: ViewHandle, private readonly rulesOfRef: Map<string, Set<string>>) {}

  static async start(start: ViewStarter, cfg: FirewallConfig, nameservers: readonly string[], input: () => FirewallPlanInput, log: Logger): Promise<FirewallView> {
    const rulesOf = new Map<string, Set<string>>();
    const ports = viewPorts(cfg.dnsPort, nameservers);
    const handle = await start({
      table: { family: 'inet', name: cfg.table }, port: ports.port,
      nameservers: nameservers.map((address) => ({ address: address.replace(/%.*$/, ''), port: 53 })),
      byServer: ports.byServer, ruleNames: viewRuleNames(cfg.policies), setsOf: () => undefined,
      targetsOf: (rules, address) => {
        let s = rulesOf.get(address);
        if (!s) { if (rulesOf.size >= MAX_RECORDS) rulesOf.clear(); rulesOf.set(address, (s = new Set())); }
        for (const r of rules) s.add(r);
        return learnedTargets(input(), rules, address);
      },
      graceSeconds: cfg.dnsGraceS, learnTimeoutMs: cfg.dnsTimeoutMs, logger: log,
    });
    log.info({ ports: [ports.port, ...ports.byServer.map((s) => s.port)], names: viewRuleNames(cfg.policies).length }, 'dns view started');
    return new FirewallView(handle, rulesOf);
  }

  /** A policy change: the view watches the new rule names (targets follow the engine's input). */
  setPolicy(cfg: FirewallConfig): void { this.handle.setPolicy(viewRuleNames(cfg.policies), () => undefined); }

  /** Live learned addresses with the rule names they were learned for, to carry into a table replacement. */
  records(): LearnedRecord[] {
    const best = new Map<string, number>();
    for (const e of this.handle.learned()) best.set(e.address, Math.max(best.get(e.address) ?? 0, e.remainingSeconds));
    for (const a of this.rulesOfRef.keys()) if (!best.has(a)) this.rulesOfRef.delete(a);
    return [...best].flatMap(([address, remainingSeconds]) => {
      const rules = this.rulesOfRef.get(address);
      return rules ? [{ address, rules: [...rules], remainingSeconds }] : [];
    });
  }

  /**
   * A name's resolved addresses changed (`before` → `after`): learned
   * elements for those addresses whose deciding rule moved (the resolver now
   * holds the address under an earlier dnsName rule, or no longer) are
   * rewritten in the same transaction, keeping their remaining time.
   */
  redecide(before: FirewallPlanInput, after: FirewallPlanInput, addresses: readonly string[], tx: Transaction): void {
    const hit = addresses.filter((a) => this.rulesOfRef.has(a));
    if (hit.length === 0) return;
    const left = new Map<string, number>();
    for (const e of this.handle.learned()) if (hit.includes(e.address)) left.set(e.address, Math.max(left.get(e.address) ?? 0, e.remainingSeconds));
    const text = (v: unknown) => JSON.stringify(v);
    for (const a of hit) {
      const secs = left.get(a);
      if (!secs) continue;
      const rules = [...this.rulesOfRef.get(a)!];
      const was = learnedTargets(before, rules, a);
      for (const t of learnedTargets(after, rules, a)) {
        const w = was.find((x) => x.set === t.set);
        if (w && text(w.verdict) === text(t.verdict)) continue;
        if (w) tx.delete({ kind: 'element', set: t.set, map: true, elements: [{ key: a }] });
        tx.add({ kind: 'element', set: t.set, map: true, elements: [{ key: a, verdict: t.verdict, timeout: secs }] });
      }
    }
  }

  /** The table was replaced with the carried elements: the learner's shadow named the old sets. */
  replaced(): void { this.handle.resetLearned(); }

  /** The view's counters summed over its ports, plus the learner's, as plain numbers. */
  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const s of Object.values(this.handle.stats)) for (const [k, v] of Object.entries(s)) out[k] = (out[k] ?? 0) + v;
    out.learned_addresses = this.rulesOfRef.size;
    out.kernel_writes = this.handle.learner?.counts.transactions ?? 0;
    return out;
  }

  close(): Promise<void> { return this.handle.close(); }
}
