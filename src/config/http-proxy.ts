/**
 * EGRESS_HTTP_PROXY_DESTINATION: one rule a line, first match wins.
 * IP, CIDR, hostname, `*.domain`, each optionally behind `!` (deny);
 * a lone `*` as the last line allows everything not denied before it.
 */
import { die } from './errors.js';
import { canonicalIp, networkOf, parseCidr, type Cidr } from './ip.js';
import { tokenize } from './lines.js';

export type HttpRuleTarget =
  | { readonly kind: 'cidr'; readonly cidr: Cidr }
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

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

export function isHostname(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 253) return false;
  return n.toLowerCase().split('.').every((l) => LABEL.test(l));
}

export function normaliseHostname(name: string): string {
  return (name.endsWith('.') ? name.slice(0, -1) : name).toLowerCase();
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
  // IPv6 may be written in brackets, as in URLs.
  const unbracketed = body.replace(/^\[([^\]]+)\](\/\d+)?$/, '$1$2');
  const c = parseCidr(unbracketed);
  if (c) return { kind: 'cidr', cidr: { ...c, address: c.prefix === (c.family === 4 ? 32 : 128) ? canonicalIp(c.address, c.family) : networkOf(c) } };
  if (body.startsWith('*.')) {
    const name = body.slice(2);
    return isHostname(name) ? { kind: 'domain', name: normaliseHostname(name) } : undefined;
  }
  // Anything that looks numeric-only but is not a valid IP is a typo, not a host.
  if (/^[\d./]+$/.test(body) || body.includes('/') || body.includes(':')) return undefined;
  return isHostname(body) ? { kind: 'host', name: normaliseHostname(body) } : undefined;
}

/** One readable line per rule, as the image printed its squid ACLs. */
export function describeHttpPolicy(p: HttpPolicy): string[] {
  const out = p.rules.map((r, i) => {
    const t = r.target;
    const what = t.kind === 'cidr' ? `${t.cidr.address}/${t.cidr.prefix}` : t.kind === 'domain' ? `${t.name} and its subdomains` : t.name;
    return `${i + 1}. ${r.action} ${what}`;
  });
  out.push(`${p.rules.length + 1}. ${p.defaultAllow ? 'allow everything else (*)' : 'deny everything else'}`);
  return out;
}
