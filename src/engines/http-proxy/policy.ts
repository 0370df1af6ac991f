/**
 * The policy decision, pure. First match wins. Host and `*.domain` rules match
 * the requested name; IP and CIDR rules match an IP-literal target and each
 * address the name resolved to. A name is allowed only when every resolved
 * address is allowed: one answer in a denied range denies the request, which
 * closes the DNS-rebinding door (a mixed answer is exactly what an attacker sends).
 */
import { ipToBigInt, type Family } from '../../config/ip.js';
import type { HttpPolicy, HttpRule } from '../../config/http-proxy.js';
import type { Host } from '../../config/host.js';

export interface Decision {
  readonly allow: boolean;
  /** The rule that decided, or undefined for the default (`*` or no rule). */
  readonly rule: HttpRule | undefined;
  /** The rule's position (0-based), -1 for the default: what metrics count by. */
  readonly index: number;
}

interface Compiled {
  readonly rule: HttpRule;
  readonly allow: boolean;
  /** This rule's decision, built once. */
  readonly verdict: Decision;
  /** Name rules: exact name, or domain suffix (".example.com"). */
  readonly name?: string;
  readonly suffix?: string;
  /** CIDR rules: IPv4 as 32-bit numbers (hot path, no bigint), IPv6 as bigint. */
  readonly family?: Family;
  readonly v4net?: number;
  readonly v4mask?: number;
  readonly v6net?: bigint;
  readonly v6shift?: bigint;
}

export interface CompiledPolicy {
  readonly source: HttpPolicy;
  readonly rules: readonly Compiled[];
  readonly defaultDecision: Decision;
}

export function compilePolicy(p: HttpPolicy): CompiledPolicy {
  const rules = p.rules.map((rule, index): Compiled => {
    const allow = rule.action === 'allow';
    const verdict: Decision = { allow, rule, index };
    const t = rule.target;
    if (t.kind === 'host') return { rule, allow, verdict, name: t.name };
    if (t.kind === 'domain') return { rule, allow, verdict, name: t.name, suffix: '.' + t.name };
    const c = t.cidr;
    if (c.family === 4) {
      const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
      return { rule, allow, verdict, family: 4, v4net: (v4ToInt(c.address) & mask) >>> 0, v4mask: mask };
    }
    const shift = BigInt(128 - c.prefix);
    return { rule, allow, verdict, family: 6, v6net: ipToBigInt(c.address, 6) >> shift, v6shift: shift };
  });
  return { source: p, rules, defaultDecision: { allow: p.defaultAllow, rule: undefined, index: -1 } };
}

export function v4ToInt(a: string): number {
  let v = 0, part = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) { v = (v << 8) | part; part = 0; } else part = part * 10 + (c - 48);
  }
  return ((v << 8) | part) >>> 0;
}

function matchesName(r: Compiled, name: string): boolean {
  if (r.name === undefined) return false;
  return name === r.name || (r.suffix !== undefined && name.endsWith(r.suffix));
}

function matchesIp(r: Compiled, address: string, family: Family, v4: number, v6: bigint | undefined): boolean {
  if (r.family !== family) return false;
  if (family === 4) return ((v4 & r.v4mask!) >>> 0) === r.v4net;
  return (v6 ?? ipToBigInt(address, 6)) >> r.v6shift! === r.v6net;
}

function verdict(r: Compiled): Decision {
  return r.verdict;
}

/** Decision for one address, reached by `name` (or an IP literal when name is undefined). */
export function decideAddress(p: CompiledPolicy, name: string | undefined, address: string, family: Family): Decision {
  const v4 = family === 4 ? v4ToInt(address) : 0;
  const v6 = family === 6 ? ipToBigInt(address, 6) : undefined;
  for (const r of p.rules) {
    if (r.family !== undefined ? matchesIp(r, address, family, v4, v6) : name !== undefined && matchesName(r, name)) return verdict(r);
  }
  return p.defaultDecision;
}

/**
 * The decision on a name before resolving it, when the addresses cannot
 * change it: the first name rule that matches comes before every CIDR rule, or
 * there are no CIDR rules at all. Undefined means "resolve, then decideName".
 */
export function decideNameEarly(p: CompiledPolicy, name: string): Decision | undefined {
  for (const r of p.rules) {
    if (r.family !== undefined) return undefined;
    if (matchesName(r, name)) return verdict(r);
  }
  return p.defaultDecision;
}

export interface NameDecision extends Decision {
  /** Allowed addresses in resolver order (all of them when allowed). */
  readonly addresses: readonly { address: string; family: Family }[];
}

/** Decide on a name and all its resolved addresses: every address must be allowed. */
export function decideName(p: CompiledPolicy, name: string, addresses: readonly { address: string; family: Family }[]): NameDecision {
  let first: Decision | undefined;
  for (const a of addresses) {
    const d = decideAddress(p, name, a.address, a.family);
    if (!d.allow) return { ...d, addresses: [] };
    first ??= d;
  }
  return { ...(first ?? p.defaultDecision), addresses };
}

/** Decision for an already-normalised IP-literal host. */
export function decideHost(p: CompiledPolicy, h: Host & { kind: 'ip' }): Decision {
  return decideAddress(p, undefined, h.address, h.family);
}

/** The 403 body: which rule denied, in the operator's own words. */
export function denialText(d: Decision): string {
  return d.rule ? `denied by rule ${d.rule.line}: ${d.rule.text}\n` : 'denied: no rule allowed it\n';
}
