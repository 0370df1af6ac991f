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
import type { Verdict } from '../../../plan/nft-tx.js';
import type { LearnHook } from './forwarder.js';

/** Puts `elements` in their sets with `timeoutSeconds`, as one transaction; resolves once committed. */
export type ElementWrite = (elements: readonly LearnedElement[], timeoutSeconds: number) => Promise<void>;

export function netlinkWrite(w: NftElementWriter): ElementWrite {
  return (elements, timeoutSeconds) => {
    // One write per set and verdict (a verdict map's elements carry theirs).
    const groups = new Map<string, { set: string; verdict?: Verdict; addresses: string[] }>();
    for (const e of elements) {
      const k = `${e.set} ${verdictKey(e.verdict)}`;
      const g = groups.get(k) ?? groups.set(k, { set: e.set, verdict: e.verdict, addresses: [] }).get(k)!;
      g.addresses.push(e.address);
    }
    return w.write([...groups.values()].map((g) => ({ ...g, timeoutMs: timeoutSeconds * 1000 })));
  };
}

const verdictKey = (v: Verdict | undefined): string => (v === undefined ? '' : typeof v === 'string' ? v : 'goto' in v ? `goto:${v.goto}` : `jump:${v.jump}`);
const verdictOfKey = (k: string): Verdict | undefined => {
  if (k === '') return undefined;
  if (k === 'accept' || k === 'drop') return k;
  const [kind, chain] = k.split(':') as [string, string];
  return kind === 'goto' ? { goto: chain } : { jump: chain };
};

export function nftSessionWrite(s: NftSession, table: SetRef): ElementWrite {
  return (elements, timeoutSeconds) => s.run(learnElements(table, elements, timeoutSeconds).text);
}

/** Where an answer's address goes: sets or verdict-map elements (the firewall's learned maps, with the deciding rule). */
export type TargetsOf = (rules: readonly string[], address: string, family: 4 | 6) => ReadonlyArray<{ readonly set: string; readonly verdict?: Verdict }>;

export interface NftLearnerOptions {
  /** The learned sets of a rule name, per family (a family without a set is not learned). */
  setsOf?(rule: string): { readonly 4?: string; readonly 6?: string } | undefined;
  /** Instead of setsOf: the elements for an address given every rule name the answer matched (first match decided by the caller). */
  targetsOf?: TargetsOf;
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

  // The elements an answer puts in the kernel, as shadow keys "set address verdict".
  const targets = (rules: readonly string[], addresses: readonly { address: string; family: 4 | 6 }[]): string[] => {
    const out: string[] = [];
    if (o.targetsOf) {
      for (const a of addresses) for (const t of o.targetsOf(rules, a.address, a.family)) out.push(`${t.set} ${a.address} ${verdictKey(t.verdict)}`);
      return out;
    }
    for (const rule of rules) {
      const sets = o.setsOf?.(rule);
      if (!sets) continue;
      for (const a of addresses) {
        const set = sets[a.family];
        if (set) out.push(`${set} ${a.address} `);
      }
    }
    return out;
  };
  const parse = (k: string): LearnedElement => {
    const [set, address, v] = k.split(' ') as [string, string, string];
    const verdict = verdictOfKey(v);
    return verdict === undefined ? { set, address } : { set, address, verdict };
  };

  const covered: NonNullable<LearnHook['covered']> = (rules, addresses, ttl) => {
    const enough = enoughFor(ttl);
    for (const k of targets(rules, addresses)) {
      const e = shadow.get(k);
      if (!e || !e.committed || e.expires < enough || !fresh(e)) return false;
    }
    return true;
  };

  const learn: LearnHook = async (rules, addresses, ttl) => {
    const now = Date.now();
    const timeout = ttl + grace;
    const expires = now + timeout * 1000;
    const enough = enoughFor(ttl);
    const add: string[] = [];
    const waits: Promise<void>[] = [];
    for (const k of targets(rules, addresses)) {
      const e = shadow.get(k);
      if (e && e.expires >= enough && fresh(e)) waits.push(e.ready);
      else if (!add.includes(k)) add.push(k);
    }
    if (add.length === 0) {
      counts.skipped++;
      await Promise.all(waits);
      return;
    }
    if (shadow.size + add.length > max) prune(now);
    counts.transactions++;
    const op = o.write(add.map(parse), Math.max(1, timeout));
    const entry: Entry = { expires, written: now, ready: op, committed: false };
    for (const k of add) shadow.set(k, entry);
    op.then(() => { entry.committed = true; }, () => {
      for (const k of add) if (shadow.get(k) === entry) shadow.delete(k);
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
        out.push({ ...parse(k), remainingSeconds: Math.ceil((e.expires - now) / 1000) });
      }
      return out;
    },
  };
}
