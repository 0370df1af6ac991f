/**
 * First match over address ranges, precomputed: an ordered list of CIDR
 * rules becomes disjoint spans, each carrying the number of the first rule
 * that covers it. An nft interval map of these spans answers "which rule
 * decides" in one lookup, whatever the number of rules, with the same answer
 * as walking the rules in order.
 */
import { bigIntToIp, ipToBigInt, type Cidr, type Family } from '../config/ip.js';

export interface Span { readonly lo: bigint; readonly hi: bigint; readonly value: number }

export function cidrRange(c: Cidr): { lo: bigint; hi: bigint } {
  const host = BigInt((c.family === 4 ? 32 : 128) - c.prefix);
  const lo = (ipToBigInt(c.address, c.family) >> host) << host;
  return { lo, hi: lo + (1n << host) - 1n };
}

/**
 * `ranges` in rule order; earlier ones win where they overlap. Each new range
 * contributes only what no earlier range covered; `covered` stays sorted and
 * merged, so a rule costs a binary search plus the intervals it overlaps.
 */
export function firstMatchSpans(ranges: ReadonlyArray<{ lo: bigint; hi: bigint; value: number }>): Span[] {
  const covered: { lo: bigint; hi: bigint }[] = [];
  const out: Span[] = [];
  for (const r of ranges) {
    let i = firstEndingAtOrAfter(covered, r.lo);
    const start = i;
    let cur = r.lo;
    while (i < covered.length && covered[i]!.lo <= r.hi) {
      const c = covered[i]!;
      if (cur < c.lo) out.push({ lo: cur, hi: c.lo - 1n, value: r.value });
      if (c.hi + 1n > cur) cur = c.hi + 1n;
      i++;
    }
    if (cur <= r.hi) out.push({ lo: cur, hi: r.hi, value: r.value });
    const lo = start < i && covered[start]!.lo < r.lo ? covered[start]!.lo : r.lo;
    const hi = start < i && covered[i - 1]!.hi > r.hi ? covered[i - 1]!.hi : r.hi;
    covered.splice(start, i - start, { lo, hi });
  }
  out.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  // Neighbours decided by the same rule become one element.
  const merged: Span[] = [];
  for (const s of out) {
    const last = merged[merged.length - 1];
    if (last && last.value === s.value && last.hi + 1n === s.lo) merged[merged.length - 1] = { lo: last.lo, hi: s.hi, value: s.value };
    else merged.push(s);
  }
  return merged;
}

function firstEndingAtOrAfter(xs: ReadonlyArray<{ hi: bigint }>, x: bigint): number {
  let lo = 0, hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]!.hi < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** The span holding `x`, by binary search over sorted disjoint spans. */
export function lookupSpan(spans: readonly Span[], x: bigint): number | undefined {
  const i = firstEndingAtOrAfter(spans, x);
  const s = spans[i];
  return s && s.lo <= x ? s.value : undefined;
}

/** An nft element key: `a`, `a/len` when the span is a prefix, else `a-b`. */
export function spanKey(lo: bigint, hi: bigint, family: Family): string {
  if (lo === hi) return bigIntToIp(lo, family);
  const size = hi - lo + 1n;
  const bits = size.toString(2).length - 1;
  if (size === 1n << BigInt(bits) && (lo & (size - 1n)) === 0n) return `${bigIntToIp(lo, family)}/${(family === 4 ? 32 : 128) - bits}`;
  return `${bigIntToIp(lo, family)}-${bigIntToIp(hi, family)}`;
}

/** The inverse of spanKey, for tests and explain. */
export function keyRange(key: string, family: Family): { lo: bigint; hi: bigint } {
  const dash = key.indexOf('-');
  if (dash > 0) return { lo: ipToBigInt(key.slice(0, dash), family), hi: ipToBigInt(key.slice(dash + 1), family) };
  const [addr, len] = key.split('/');
  return cidrRange({ address: addr!, family, prefix: len === undefined ? (family === 4 ? 32 : 128) : Number(len) });
}
