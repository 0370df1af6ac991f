/**
 * Where a client wants to go: the authority of a CONNECT or an absolute URL,
 * its host normalised by the one host grammar (config/host.ts) before any
 * policy decision, exactly as the rules were.
 */
import { normaliseHost, type Host } from '../../config/host.js';

export interface Target {
  readonly host: Host;
  readonly port: number;
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
