/**
 * Name lookup for the HTTP proxy: what a client in the pod would get. A and
 * AAAA from the resolv.conf nameservers (both: the policy judges every
 * address a name has), then getaddrinfo for names DNS does not know (/etc/hosts,
 * search domains of short service names). The resolver in resolver.ts is the
 * DNS proxy's: A-first with the OpenShift image's union-of-servers semantics.
 *
 * Resolution happens once per request: the answer the policy decides on is the
 * answer the proxy connects to. Answers are cached for their DNS TTL, as
 * squid's ipcache does, so a busy origin costs one query per TTL, not one per
 * request.
 */
import { Resolver, lookup } from 'node:dns/promises';
import { unmapIp, type Family } from '../config/ip.js';

export interface Address { readonly address: string; readonly family: Family }

export type ResolveFn = (name: string) => Promise<readonly Address[]>;

interface Entry { readonly expires: number; readonly value: Promise<readonly Address[]> }

/** Upper bound on cached names: a scan of random names must not grow memory. */
const MAX_ENTRIES = 4096;
/** TTL ceiling, and the lifetime of answers from /etc/hosts (no TTL there). */
const MAX_TTL_MS = 300_000;

export function createResolver(opts: { timeoutMs?: number } = {}): ResolveFn {
  const resolver = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: 2 });
  const cache = new Map<string, Entry>();

  async function query(name: string): Promise<{ list: Address[]; ttl: number }> {
    const [a, aaaa] = await Promise.allSettled([resolver.resolve4(name, { ttl: true }), resolver.resolve6(name, { ttl: true })]);
    const list: Address[] = [];
    let ttl = MAX_TTL_MS / 1000;
    if (a.status === 'fulfilled') for (const r of a.value) { list.push({ address: r.address, family: 4 }); ttl = Math.min(ttl, r.ttl); }
    // AAAA may carry IPv4-mapped addresses: judge them as the IPv4 they reach.
    if (aaaa.status === 'fulfilled') for (const r of aaaa.value) { const n = unmapIp(r.address, 6); list.push({ address: n.address, family: n.family }); ttl = Math.min(ttl, r.ttl); }
    if (list.length > 0) return { list, ttl };
    // Not in DNS: names from /etc/hosts (getaddrinfo), as every client would see them.
    try {
      const r = await lookup(name, { all: true, verbatim: true });
      return { list: r.map((x) => unmapIp(x.address, x.family === 6 ? 6 : 4)), ttl: MAX_TTL_MS / 1000 };
    } catch {
      const err = a.status === 'rejected' ? (a.reason as NodeJS.ErrnoException) : undefined;
      throw Object.assign(new Error(`${name} does not resolve${err?.code ? ` (${err.code})` : ''}`), { code: 'ENOTFOUND' });
    }
  }

  return (name) => {
    const now = Date.now();
    const hit = cache.get(name);
    if (hit && hit.expires > now) return hit.value;
    if (cache.size >= MAX_ENTRIES) cache.clear();
    const entry: { expires: number; value: Promise<readonly Address[]> } = { expires: now + 5000, value: undefined as never };
    entry.value = query(name).then(
      (r) => { entry.expires = Date.now() + Math.min(r.ttl * 1000, MAX_TTL_MS); return r.list; },
      // Failures are not cached: the next request asks again.
      (e) => { cache.delete(name); throw e; },
    );
    cache.set(name, entry);
    return entry.value;
  };
}
