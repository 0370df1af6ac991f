/**
 * From a normalised target to "connect to one of these addresses" or a
 * refusal, shared by CONNECT and plain HTTP. The addresses returned are the
 * ones the policy allowed, in resolver order; callers connect to exactly them
 * (the next one when one fails), never to a fresh lookup.
 */
import { ipFamily, type Family } from '../../config/ip.js';
import { decideHost, decideName, decideNameEarly, type Decision } from './policy.js';
import type { Address } from '../../dns/lookup.js';
import type { Runtime } from './runtime.js';
import type { Target } from './target.js';

export type Route =
  | { readonly ok: true; readonly decision: Decision; readonly addresses: readonly Address[] }
  | { readonly ok: false; readonly status: 403 | 502; readonly decision: Decision | undefined; readonly reason: string };

/** Synchronous for IP literals (most proxied traffic in a cluster): no promise per request. */
export function route(rt: Runtime, t: Target): Route | Promise<Route> {
  const h = t.host;
  if (h.kind === 'ip') {
    const d = count(rt, decideHost(rt.policy, h));
    return d.allow ? usable(rt, d, [{ address: h.address, family: h.family }]) : { ok: false, status: 403, decision: d, reason: 'denied' };
  }
  // A name denied whatever it resolves to is refused without asking DNS.
  const early = decideNameEarly(rt.policy, h.name);
  if (early && !early.allow) return { ok: false, status: 403, decision: count(rt, early), reason: 'denied' };
  return byName(rt, h.name, early);
}

/** One decision counted (plain numbers, published at scrape time). */
function count<D extends Decision>(rt: Runtime, d: D): D {
  const s = rt.stats;
  if (d.index < 0) { if (d.allow) s.allowDefault++; else s.denyDefault++; return d; }
  const a = d.allow ? s.allowHits : s.denyHits;
  a[d.index] = (a[d.index] ?? 0) + 1;
  return d;
}

async function byName(rt: Runtime, name: string, early: Decision | undefined): Promise<Route> {
  let addrs;
  try {
    addrs = await rt.resolve(name);
  } catch (e) {
    return { ok: false, status: 502, decision: early, reason: (e as Error).message };
  }
  const d = count(rt, decideName(rt.policy, name, addrs));
  if (rt.debug) rt.logger.debug({ name, addresses: addrs.map((a) => a.address), allow: d.allow, rule: d.rule?.text }, 'resolved and decided');
  if (!d.allow) return { ok: false, status: 403, decision: d, reason: 'denied' };
  if (d.addresses.length === 0) return { ok: false, status: 502, decision: d, reason: `${name} has no addresses` };
  return usable(rt, d, d.addresses);
}

/**
 * Host placement binds the egress source: an address of the other family
 * would leave from the node's own address instead. Such addresses are
 * skipped; with none left, refuse rather than leak.
 */
function usable(rt: Runtime, d: Decision, addrs: readonly Address[]): Route {
  if (!rt.localAddress) return { ok: true, decision: d, addresses: addrs };
  const fam: Family = ipFamily(rt.localAddress) === 6 ? 6 : 4;
  const same = addrs.filter((a) => a.family === fam);
  if (same.length > 0) return { ok: true, decision: d, addresses: same };
  return { ok: false, status: 502, decision: d, reason: `no IPv${addrs[0]!.family} egress source address for ${addrs[0]!.address}` };
}
