/**
 * Host names and IP literals: the one grammar behind every rule (the three
 * destination variables) and every request the HTTP proxy judges, so a rule
 * and a request that name the same address mean the same address. An IP
 * literal in any spelling a resolver or browser accepts becomes one canonical
 * address, so `!10.0.0.0/8` cannot be bypassed with `0x0a.1`, `[::ffff:a00:1]`
 * or `10.0.0.1.`. Everything else must be a valid host name.
 */
import { isIPv4 } from 'node:net';
import { ipFamily, unmapIp, type Family } from './ip.js';

export type Host =
  | { readonly kind: 'ip'; readonly address: string; readonly family: Family }
  | { readonly kind: 'name'; readonly name: string };

export type IpHost = Host & { kind: 'ip' };

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

export function isHostname(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 253) return false;
  return n.toLowerCase().split('.').every((l) => LABEL.test(l));
}

/** Normalise a host as written in a request or rule (brackets allowed); undefined when invalid. */
export function normaliseHost(raw: string): Host | undefined {
  let h = raw;
  if (h.startsWith('[')) {
    if (!h.endsWith(']')) return undefined;
    return ipv6Host(h.slice(1, -1));
  }
  if (h.includes(':')) return ipv6Host(h);
  // The common case, checked natively before any regular expression.
  if (isIPv4(h)) return { kind: 'ip', address: h, family: 4 };
  // One trailing dot is the root label: `example.com.` and `10.0.0.1.`.
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0) return undefined;
  // Resolvers (inet_aton) and URL parsers read a host whose last label is
  // numeric as IPv4 (`127.1`, `0x7f.0.0.1`, `2130706433`): so must we.
  const last = h.slice(h.lastIndexOf('.') + 1);
  if (/^(0x[0-9a-f]*|\d+)$/i.test(last)) {
    const v4 = parseInetAton(h);
    return v4 === undefined ? undefined : { kind: 'ip', address: v4, family: 4 };
  }
  if (!isHostname(h)) return undefined;
  return { kind: 'name', name: h.toLowerCase() };
}

function ipv6Host(s: string): Host | undefined {
  const fam = ipFamily(s);
  if (fam === 4) return { kind: 'ip', address: s, family: 4 };
  if (fam !== 6) return undefined;
  return normaliseAddress(s, 6);
}

/** Canonical form of a resolved or literal address; IPv4-mapped IPv6 becomes IPv4. */
export function normaliseAddress(address: string, family: Family): IpHost {
  return { kind: 'ip', ...unmapIp(address, family) };
}

/**
 * An IP literal as the OpenShift grammars write one: a dotted quad or an IPv6
 * address (in brackets when `brackets`), no inet_aton forms (the scripts'
 * regular expressions had none). Canonical; IPv4-mapped IPv6 is IPv4.
 */
export function parseIpLiteral(s: string, brackets = false): IpHost | undefined {
  const bare = brackets && s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  const fam = ipFamily(bare);
  if (fam === 0 || (fam === 4 && bare !== s)) return undefined;
  return normaliseAddress(bare, fam);
}

/** inet_aton: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last fills the rest. */
export function parseInetAton(s: string): string | undefined {
  const parts = s.split('.');
  if (parts.length > 4) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9]\d*)$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isSafeInteger(n)) return undefined;
    nums.push(n);
  }
  let v = 0;
  for (let i = 0; i < nums.length - 1; i++) {
    if (nums[i]! > 255) return undefined;
    v = v * 256 + nums[i]!;
  }
  const restBytes = 5 - nums.length;
  const last = nums[nums.length - 1]!;
  if (last >= 256 ** restBytes) return undefined;
  v = v * 256 ** restBytes + last;
  return `${Math.floor(v / 2 ** 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function hostText(h: Host): string {
  return h.kind === 'name' ? h.name : h.family === 6 ? `[${h.address}]` : h.address;
}
