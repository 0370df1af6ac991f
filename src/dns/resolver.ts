/**
 * Resolving one name with the nameservers of resolv.conf. Each attempt asks
 * every nameserver at once and takes the union of the answers with the
 * minimum TTL (as the OpenShift SDN resolver settled on: servers behind a
 * load balancer may each know only part of a record set).
 */
import { queryServer, type RecordType } from './query.js';
import type { ResolvConf } from './resolv-conf.js';

export interface ResolveOptions {
  /** Also ask for AAAA when a name has no A records. */
  readonly ipv6?: boolean;
  /** A and AAAA together, always (the egress firewall judges every address a name has). */
  readonly both?: boolean;
  /** Nameserver port; 53 except in tests on loopback. */
  readonly port?: number;
}

export interface Resolution {
  readonly addresses: string[];
  /** Minimum TTL of the records, seconds (0 when the name has none). */
  readonly ttl: number;
}

export function unionAnswers(answers: ReadonlyArray<{ addresses: readonly string[]; ttl: number | undefined }>): Resolution {
  const set = new Set<string>();
  let ttl: number | undefined;
  for (const a of answers) {
    for (const addr of a.addresses) set.add(addr);
    if (a.ttl !== undefined) ttl = ttl === undefined ? a.ttl : Math.min(ttl, a.ttl);
  }
  // Sorted so that an unchanged set compares equal whatever the answer order.
  return { addresses: [...set].sort(), ttl: ttl ?? 0 };
}

async function resolveType(conf: ResolvConf, name: string, type: RecordType, port: number): Promise<Resolution> {
  let lastError: unknown = new Error('no nameservers');
  for (let attempt = 0; attempt < conf.attempts; attempt++) {
    const results = await Promise.allSettled(conf.nameservers.map((ns) => queryServer(ns, name, type, conf.timeoutMs, port)));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (ok.length > 0) return unionAnswers(ok);
    lastError = results.find((r) => r.status === 'rejected')?.reason ?? lastError;
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

/** A records, as the image's haproxy preferred; AAAA only when configured and there is no A. */
export async function resolveName(conf: ResolvConf, name: string, opts: ResolveOptions = {}): Promise<Resolution> {
  const port = opts.port ?? 53;
  if (opts.both) {
    const rs = await Promise.allSettled([resolveType(conf, name, 'A', port), resolveType(conf, name, 'AAAA', port)]);
    const ok = rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (ok.length === 0) throw (rs[0] as PromiseRejectedResult).reason;
    return unionAnswers(ok.filter((r) => r.addresses.length > 0));
  }
  const a = await resolveType(conf, name, 'A', port);
  if (a.addresses.length > 0 || !opts.ipv6) return a;
  return resolveType(conf, name, 'AAAA', port);
}
