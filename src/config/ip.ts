/**
 * Strict IP address and prefix parsing, shared by every grammar.
 * Uses Node's own validators so IPv4 and IPv6 follow the platform's rules.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Cidr {
  readonly address: string;
  readonly family: Family;
  readonly prefix: number;
}

/**
 * The OpenShift scripts' IPv4 pattern: four runs of digits. It decides which
 * form a line has; whether the address is valid is checked after the ports,
 * as the image (where iptables or haproxy refused it) did.
 */
export const DOTTED_QUAD_SHAPE = /^\d+\.\d+\.\d+\.\d+$/;

export function ipFamily(s: string): Family | 0 {
  // Node's isIPv6 accepts a zone ("fe80::1%eth0") that the rest of this module
  // would silently drop: refuse it rather than route via another interface.
  if (s.includes('%')) return 0;
  if (isIPv4(s)) return 4;
  if (isIPv6(s)) return 6;
  return 0;
}

/** Parse `IP` or `IP/len`; a bare IP gets the full-length prefix. */
export function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf('/');
  const address = slash < 0 ? s : s.slice(0, slash);
  const family = ipFamily(address);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  if (slash < 0) return { address, family, prefix: max };
  const len = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(len)) return undefined;
  const prefix = Number(len);
  if (prefix > max) return undefined;
  return { address, family, prefix };
}

/** The address as a big integer, for prefix arithmetic. */
export function ipToBigInt(address: string, family: Family): bigint {
  if (family === 4) {
    return address.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  }
  return expandIPv6(address).reduce((acc, h) => (acc << 16n) | BigInt(h), 0n);
}

export function bigIntToIp(n: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
  }
  const parts: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) parts.push(((n >> s) & 0xffffn).toString(16));
  return compressIPv6(parts);
}

/** The network address of a CIDR (host bits cleared). */
export function networkOf(c: Cidr): string {
  const bits = BigInt(c.family === 4 ? 32 : 128);
  const hostBits = bits - BigInt(c.prefix);
  const n = (ipToBigInt(c.address, c.family) >> hostBits) << hostBits;
  return bigIntToIp(n, c.family);
}

export function cidrContains(c: Cidr, address: string, family: Family): boolean {
  if (c.family !== family) return false;
  const hostBits = BigInt((family === 4 ? 32 : 128) - c.prefix);
  return ipToBigInt(c.address, family) >> hostBits === ipToBigInt(address, family) >> hostBits;
}

/** Canonical text form (lower-case, compressed IPv6). */
export function canonicalIp(address: string, family: Family): string {
  return bigIntToIp(ipToBigInt(address, family), family);
}

/**
 * An address as the host it reaches: IPv4-mapped IPv6 (::ffff:a.b.c.d, in
 * any spelling) is that IPv4 address, so policies, allow-lists and logs judge
 * it as one. The one place `::ffff:` is stripped.
 */
export function unmapIp(address: string, family: Family): { address: string; family: Family } {
  if (family === 4) return { address, family: 4 };
  // What a dual-stack socket reports for every IPv4 peer: no bigint on that path.
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return { address: address.slice(7), family: 4 };
  const n = ipToBigInt(address, 6);
  if (n >> 32n === 0xffffn) return { address: bigIntToIp(n & 0xffffffffn, 4), family: 4 };
  return { address: canonicalIp(address, 6), family: 6 };
}

/** unmapIp for an address of unknown family (a socket's peer); anything else unchanged. */
export function unmapText(address: string): string {
  const family = ipFamily(address);
  return family === 0 ? address : unmapIp(address, family).address;
}

function expandIPv6(address: string): number[] {
  let a = address;
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hextets.
  const dq = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dq) {
    const o = dq[1]!.split('.').map(Number);
    a = a.slice(0, dq.index) + ((o[0]! << 8) | o[1]!).toString(16) + ':' + ((o[2]! << 8) | o[3]!).toString(16);
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  return [...h, ...Array(fill).fill('0'), ...t].map((x) => parseInt(x, 16));
}

function compressIPv6(parts: string[]): string {
  // Replace the longest run of zero hextets (length >= 2) with '::' (RFC 5952).
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return parts.join(':');
  return parts.slice(0, best).join(':') + '::' + parts.slice(best + bestLen).join(':');
}
