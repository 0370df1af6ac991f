/**
 * EGRESS_DNS_PROXY_DESTINATION: `<port> <ip-or-name> [<remote_port>]` a line.
 * Each line becomes a TCP listener forwarding to that target.
 */
import { die } from './errors.js';
import { normaliseHost, parseIpLiteral } from './host.js';
import { DOTTED_QUAD_SHAPE } from './ip.js';
import { tokenize } from './lines.js';
import { parsePort } from './port.js';

export type DnsProxyTarget =
  | { readonly kind: 'ip'; readonly address: string; readonly family: 4 | 6 }
  | { readonly kind: 'name'; readonly name: string };

export interface DnsProxyForward {
  readonly localPort: number;
  readonly target: DnsProxyTarget;
  readonly remotePort: number;
  readonly text: string;
}

export function parseDnsProxyDestinations(value: string | undefined): DnsProxyForward[] {
  if (!value || value.trim() === '') die('Must specify EGRESS_DNS_PROXY_DESTINATION');
  const out: DnsProxyForward[] = [];
  const used = new Set<number>();
  for (const line of tokenize(value)) {
    const [port, target, remote, ...rest] = line.fields;
    const bad: () => never = () => die(`Bad destination '${line.text}'`);
    // The image's order: the line must have one of its forms (port words are
    // digits, the target an address or name), else Bad destination; then the
    // local port, the remote port, and last the port's uniqueness.
    if (target === undefined || rest.length > 0 || !DIGITS.test(port!) || (remote !== undefined && !DIGITS.test(remote))) bad();
    const parsed = parseTarget(target);
    if (!parsed && !DOTTED_QUAD_SHAPE.test(target) && !IMAGE_NAME_SHAPE.test(target)) bad();
    const localPort = parsePort(port!);
    const remotePort = remote === undefined ? localPort : parsePort(remote);
    // A target of the image's shape that is no valid address or name.
    if (!parsed) bad();
    if (used.has(localPort)) die(`Proxy port ${localPort} already used, must be unique for each destination`);
    used.add(localPort);
    out.push({ localPort, target: parsed, remotePort, text: line.text });
  }
  if (out.length === 0) die('Must specify EGRESS_DNS_PROXY_DESTINATION');
  return out;
}

const DIGITS = /^\d+$/;
/** The image's DOMAINNAME_REGEX: a line of this shape is a name form, valid or not. */
const IMAGE_NAME_SHAPE = /^[A-Za-z0-9][A-Za-z0-9-]+?\.[A-Za-z0-9.-]+$/;

/**
 * An IP literal (the image's dotted quad, or IPv6 bare or in brackets) or a
 * host name. A word whose last label is numeric is an IP to every resolver,
 * never a DNS name: only plain literals are accepted as addresses here.
 */
function parseTarget(s: string): DnsProxyTarget | undefined {
  const ip = parseIpLiteral(s, true);
  if (ip) return { kind: 'ip', address: ip.address, family: ip.family };
  const h = normaliseHost(s);
  return h?.kind === 'name' ? { kind: 'name', name: h.name } : undefined;
}

export function describeTarget(t: DnsProxyTarget): string {
  return t.kind === 'ip' ? (t.family === 6 ? `[${t.address}]` : t.address) : t.name;
}

/** One readable line per listener, as the image printed its haproxy config. */
export function describeDnsProxy(forwards: readonly DnsProxyForward[]): string[] {
  return forwards.map((f) => `port ${f.localPort} -> ${describeTarget(f.target)}:${f.remotePort}`);
}
