/**
 * Where a client wants to go, normalised before any policy decision: an IP
 * literal in any spelling a resolver or browser accepts becomes one canonical
 * address, so `!10.0.0.0/8` cannot be bypassed with `0x0a.1`, `[::ffff:a00:1]`
 * or `10.0.0.1.`. Everything else must be a valid host name.
 */
import { isIPv4 } from 'node:net';
import { ipFamily, unmapIp, type Family } from '../../config/ip.js';
import { isHostname } from '../../config/http-proxy.js';

export type Host =
  | { readonly kind: 'ip'; readonly address: string; readonly family: Family }
  | { readonly kind: 'name'; readonly name: string };

export interface Target {
  readonly host: Host;
  readonly port: number;
}

/** Normalise a host as written in a request (brackets allowed); undefined when invalid. */
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
export function normaliseAddress(address: string, family: Family): Host & { kind: 'ip' } {
  return { kind: 'ip', ...unmapIp(address, family) };
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

/** `host:port` of a CONNECT request (port required). */
export function parseAuthority(authority: string, defaultPort?: number): Target | undefined {
  let host: string, portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) return undefined;
    host = authority.slice(0, close + 1);
    const rest = authority.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return undefined;
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = authority.lastIndexOf(':');
    // A bare IPv6 literal has several colons and no port.
    if (colon >= 0 && authority.indexOf(':') !== colon) return undefined;
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) return undefined;
    port = Number(portText);
  }
  if (port === undefined || port < 1 || port > 65535) return undefined;
  const h = normaliseHost(host);
  return h && { host: h, port };
}

export interface AbsoluteUrl extends Target {
  /** Origin-form path with query, as sent upstream. */
  readonly path: string;
  /** The authority as the client wrote it, for the Host header when absent. */
  readonly authority: string;
}

/** `http://host[:port]/path?query`; undefined for anything else (https, origin-form, userinfo). */
export function parseAbsoluteUrl(url: string): AbsoluteUrl | undefined {
  if (url.length < 8 || url.charCodeAt(4) !== 58 /* : */ || url.slice(0, 7).toLowerCase() !== 'http://') return undefined;
  let end = 7;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) break;
    end++;
  }
  const authority = url.slice(7, end);
  if (authority.includes('@')) return undefined;
  const t = parseAuthority(authority, 80);
  if (!t) return undefined;
  let path = end === url.length ? '/' : url.slice(end);
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  if (path.startsWith('?')) path = '/' + path;
  return { host: t.host, port: t.port, path, authority };
}

export function hostText(h: Host): string {
  return h.kind === 'name' ? h.name : h.family === 6 ? `[${h.address}]` : h.address;
}
