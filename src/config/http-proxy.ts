/**
 * EGRESS_HTTP_PROXY_DESTINATION: one rule a line, first match wins.
 * IP, CIDR, hostname, `*.domain`, each optionally behind `!` (deny);
 * a lone `*` as the last line allows everything not denied before it.
 * Hosts and IP spellings follow the one host grammar (host.ts).
 */
import { die } from './errors.js';
import { normaliseHost } from './host.js';
import { bigIntToIp, canonicalIp, ipFamily, ipToBigInt, networkOf, type Cidr, type Family } from './ip.js';
import { tokenize } from './lines.js';

export type HttpRuleTarget =
  /** `written`: the address as the rule spelled it, when not a plain IP literal (0x7f.0.0.1, ::ffff:a00:1). */
  | { readonly kind: 'cidr'; readonly cidr: Cidr; readonly written?: string }
  /** Exact host name, lower-case, no trailing dot. */
  | { readonly kind: 'host'; readonly name: string }
  /** `*.domain`: the domain itself and every subdomain. */
  | { readonly kind: 'domain'; readonly name: string };

export interface HttpRule {
  readonly action: 'allow' | 'deny';
  readonly target: HttpRuleTarget;
  /** The rule as written (normalised whitespace), for logs and 403 bodies. */
  readonly text: string;
  readonly line: number;
}

export interface HttpPolicy {
  readonly rules: readonly HttpRule[];
  /** True when the list ends in `*`: unmatched targets are allowed. */
  readonly defaultAllow: boolean;
}

export function parseHttpProxyDestinations(value: string | undefined): HttpPolicy {
  if (!value || value.trim() === '') die('No EGRESS_HTTP_PROXY_DESTINATION specified');
  const rules: HttpRule[] = [];
  let wildcard = false;
  for (const line of tokenize(value)) {
    if (wildcard) die('Wildcard must be last rule, if present');
    if (line.text === '*') { wildcard = true; continue; }
    const bad = (): never => die(`Bad destination '${line.text}'`);
    if (line.fields.length !== 1) bad();
    const deny = line.text.startsWith('!');
    const body = deny ? line.text.slice(1) : line.text;
    rules.push({ action: deny ? 'deny' : 'allow', target: parseTarget(body) ?? bad(), text: line.text, line: line.number });
  }
  if (rules.length === 0 && !wildcard) die('No EGRESS_HTTP_PROXY_DESTINATION specified');
  return { rules, defaultAllow: wildcard };
}

function parseTarget(body: string): HttpRuleTarget | undefined {
  if (body.startsWith('*.')) {
    const h = normaliseHost(body.slice(2));
    return h?.kind === 'name' ? { kind: 'domain', name: h.name } : undefined;
  }
  const slash = body.indexOf('/');
  if (slash >= 0) return cidrTarget(body.slice(0, slash), body.slice(slash + 1));
  // Hosts and addresses are read exactly as a request's host is, so a rule
  // and a request that name the same address mean the same address.
  const h = normaliseHost(body);
  if (h?.kind === 'name') return { kind: 'host', name: h.name };
  return h && ipTarget(h.address, h.family, h.family === 4 ? 32 : 128, body);
}

function cidrTarget(written: string, len: string): HttpRuleTarget | undefined {
  if (!/^\d{1,3}$/.test(len)) return undefined;
  let prefix = Number(len);
  const bare = written.replace(/^\[(.+)\]$/, '$1');
  if (ipFamily(bare) === 6) {
    if (prefix > 128) return undefined;
    // An IPv4-mapped range is the IPv4 range, as requests to it are unmapped;
    // a wider one is an IPv6 range.
    const n = ipToBigInt(bare, 6);
    if (prefix >= 96 && n >> 32n === 0xffffn) return ipTarget(bigIntToIp(n & 0xffffffffn, 4), 4, prefix - 96, written);
    return ipTarget(bare, 6, prefix, written);
  }
  // With a prefix the address must have four parts: `10/8` is 0.0.0.10 to
  // inet_aton but 10.0.0.0/8 to a reader, so it means nothing safe.
  const h = normaliseHost(written);
  if (h?.kind !== 'ip' || h.family !== 4 || written.replace(/\.$/, '').split('.').length !== 4 || prefix > 32) return undefined;
  return ipTarget(h.address, 4, prefix, written);
}

function ipTarget(address: string, family: Family, prefix: number, written: string): HttpRuleTarget {
  const c = { address, family, prefix };
  const cidr = { ...c, address: prefix === (family === 4 ? 32 : 128) ? canonicalIp(address, family) : networkOf(c) };
  // Say what a spelling other than a plain IP literal of that family became.
  return ipFamily(written.replace(/^\[(.+)\]$/, '$1')) === family ? { kind: 'cidr', cidr } : { kind: 'cidr', cidr, written };
}

/** One readable line per rule, as the image printed its squid ACLs. */
export function describeHttpPolicy(p: HttpPolicy): string[] {
  const out = p.rules.map((r, i) => {
    const t = r.target;
    const what = t.kind === 'cidr' ? `${t.cidr.address}/${t.cidr.prefix}${t.written ? ` (written ${t.written})` : ''}`
      : t.kind === 'domain' ? `${t.name} and its subdomains` : t.name;
    return `${i + 1}. ${r.action} ${what}`;
  });
  out.push(`${p.rules.length + 1}. ${p.defaultAllow ? 'allow everything else (*)' : 'deny everything else'}`);
  return out;
}
