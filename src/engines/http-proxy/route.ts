/**
 * From a normalised target to "connect to this address" or a refusal, shared
 * by CONNECT and plain HTTP. The address returned is the one the policy
 * allowed; callers connect to exactly it.
 */
import { ipFamily, type Family } from '../../config/ip.js';
import { decideHost, decideName, decideNameEarly, type Decision } from './policy.js';
import type { Runtime } from './runtime.js';
import type { Target } from './target.js';

export type Route =
  | { readonly ok: true; readonly decision: Decision; readonly address: string; readonly family: Family }
  | { readonly ok: false; readonly status: 403 | 502; readonly decision: Decision | undefined; readonly reason: string };

export async function route(rt: Runtime, t: Target): Promise<Route> {
  const r = await decide(rt, t);
  // Host placement binds the egress source; a target of the other family
  // would leave from the node's own address instead: refuse rather than leak.
  if (r.ok && rt.localAddress && ipFamily(rt.localAddress) !== r.family) {
    return { ok: false, status: 502, decision: r.decision, reason: `no IPv${r.family} egress source address for ${r.address}` };
  }
  return r;
}

async function decide(rt: Runtime, t: Target): Promise<Route> {
  const h = t.host;
  if (h.kind === 'ip') {
    const d = decideHost(rt.policy, h);
    return d.allow ? { ok: true, decision: d, address: h.address, family: h.family } : { ok: false, status: 403, decision: d, reason: 'denied' };
  }
  // A name denied whatever it resolves to is refused without asking DNS.
  const early = decideNameEarly(rt.policy, h.name);
  if (early && !early.allow) return { ok: false, status: 403, decision: early, reason: 'denied' };
  let addrs;
  try {
    addrs = await rt.resolve(h.name);
  } catch (e) {
    return { ok: false, status: 502, decision: early, reason: (e as Error).message };
  }
  const d = decideName(rt.policy, h.name, addrs);
  if (rt.debug) rt.logger.debug({ name: h.name, addresses: addrs.map((a) => a.address), allow: d.allow, rule: d.rule?.text }, 'resolved and decided');
  if (!d.allow) return { ok: false, status: 403, decision: d, reason: 'denied' };
  const first = d.addresses[0];
  if (!first) return { ok: false, status: 502, decision: d, reason: `${h.name} has no addresses` };
  return { ok: true, decision: d, address: first.address, family: first.family };
}
