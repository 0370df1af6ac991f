/**
 * A learn hook backed by nftables sets: a learn() call becomes one nft
 * transaction adding the addresses to each rule's learned set with
 * timeout = TTL + grace, acknowledged by the kernel before the hook resolves.
 * The transaction goes through `write`: netlinkWrite (apply/nft-netlink.ts,
 * the fast path) or nftSessionWrite (nft text through a running nft).
 *
 * A shadow of what was added (set, address -> expiry) skips the kernel when
 * the set already holds the address long enough (repeated lookups of a busy
 * name cost nothing) and never shortens a longer timeout another answer
 * gave. An entry whose add is still in flight is waited for, not skipped:
 * "in the shadow" never means "maybe not in the kernel yet". Bounded; on
 * overflow expired entries go, then all (only costs extra adds).
 */
import { learnElements, type LearnedElement, type SetRef } from '../../../plan/nft-dns-view.js';
import type { NftElementWriter } from '../../../apply/nft-netlink.js';
import type { NftSession } from '../../../apply/nft-session.js';
import type { LearnHook } from './forwarder.js';

/** Puts `elements` in their sets with `timeoutSeconds`, as one transaction; resolves once committed. */
export type ElementWrite = (elements: readonly LearnedElement[], timeoutSeconds: number) => Promise<void>;

export function netlinkWrite(w: NftElementWriter): ElementWrite {
  return (elements, timeoutSeconds) => {
    const bySet = new Map<string, string[]>();
    for (const e of elements) (bySet.get(e.set) ?? bySet.set(e.set, []).get(e.set)!).push(e.address);
    return w.write([...bySet].map(([set, addresses]) => ({ set, addresses, timeoutMs: timeoutSeconds * 1000 })));
  };
}

export function nftSessionWrite(s: NftSession, table: SetRef): ElementWrite {
  return (elements, timeoutSeconds) => s.run(learnElements(table, elements, timeoutSeconds).text);
}

export interface NftLearnerOptions {  /** The learned sets of a rule name, per family (a family without a set is not learned). */
  setsOf(rule: string): { readonly 4?: string; readonly 6?: string } | undefined;
  /** Seconds added to the answer's TTL (EGRESS_FIREWALL_DNS_GRACE, default 30). */
  readonly graceSeconds?: number;
  readonly write: ElementWrite;
  readonly maxEntries?: number;
  /**
   * How long the shadow's word is taken without asking the kernel again
   * (default 10 s): if the sets were flushed behind the learner's back (a
   * reset() forgotten), answers go out for missing addresses for at most
   * this long.
   */
  readonly trustSeconds?: number;
}

interface Entry { readonly expires: number; readonly written: number; readonly ready: Promise<void>; committed: boolean }

export interface NftLearner {
  readonly learn: LearnHook;
  /** Live elements, to carry into a table replacement (a policy reload must not drop them). */
  snapshot(): Array<LearnedElement & { readonly remainingSeconds: number }>;
  /** Forget the shadow (the sets were recreated empty). */
  reset(): void;
  /** Transactions sent to the kernel, and learn() calls the shadow answered alone. */
  readonly counts: { transactions: number; skipped: number };
}

export function nftLearner(o: NftLearnerOptions): NftLearner {
  const grace = o.graceSeconds ?? 30;
  const max = o.maxEntries ?? 200_000;
  const trustMs = (o.trustSeconds ?? 10) * 1000;
  const shadow = new Map<string, Entry>();
  const counts = { transactions: 0, skipped: 0 };

  const prune = (now: number) => {
    for (const [k, e] of shadow) if (e.expires <= now) shadow.delete(k);
    if (shadow.size >= max) shadow.clear();
  };

  // An element that outlives the new one by at least half the grace, written
  // recently enough to be believed, is left alone.
  const enoughFor = (ttl: number) => Date.now() + (ttl + grace / 2) * 1000;
  const fresh = (e: Entry) => Date.now() - e.written <= trustMs;

  const covered: NonNullable<LearnHook['covered']> = (rules, addresses, ttl) => {
    const enough = enoughFor(ttl);
    for (const rule of rules) {
      const sets = o.setsOf(rule);
      if (!sets) continue;
      for (const a of addresses) {
        const set = sets[a.family];
        if (!set) continue;
        const e = shadow.get(`${set} ${a.address}`);
        if (!e || !e.committed || e.expires < enough || !fresh(e)) return false;
      }
    }
    return true;
  };

  const learn: LearnHook = async (rules, addresses, ttl) => {
    const now = Date.now();
    const timeout = ttl + grace;
    const expires = now + timeout * 1000;
    const enough = enoughFor(ttl);
    const add: LearnedElement[] = [];
    const waits: Promise<void>[] = [];
    for (const rule of rules) {
      const sets = o.setsOf(rule);
      if (!sets) continue;
      for (const a of addresses) {
        const set = sets[a.family];
        if (!set) continue;
        const e = shadow.get(`${set} ${a.address}`);
        if (e && e.expires >= enough && fresh(e)) waits.push(e.ready);
        else add.push({ set, address: a.address });
      }
    }
    if (add.length === 0) {
      counts.skipped++;
      await Promise.all(waits);
      return;
    }
    if (shadow.size + add.length > max) prune(now);
    counts.transactions++;
    const op = o.write(add, Math.max(1, timeout));
    const entry: Entry = { expires, written: now, ready: op, committed: false };
    for (const e of add) shadow.set(`${e.set} ${e.address}`, entry);
    op.then(() => { entry.committed = true; }, () => {
      for (const e of add) { const k = `${e.set} ${e.address}`; if (shadow.get(k) === entry) shadow.delete(k); }
    });
    await Promise.all([op, ...waits]);
  };

  learn.covered = covered;
  return {
    learn,
    counts,
    reset: () => shadow.clear(),
    snapshot() {
      const now = Date.now();
      const out: Array<LearnedElement & { remainingSeconds: number }> = [];
      for (const [k, e] of shadow) {
        if (e.expires <= now) continue;
        const cut = k.indexOf(' ');
        out.push({ set: k.slice(0, cut), address: k.slice(cut + 1), remainingSeconds: Math.ceil((e.expires - now) / 1000) });
      }
      return out;
    },
  };
}
