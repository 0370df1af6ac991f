/**
 * The redirect-mode contract: EGRESS_SOURCE, EGRESS_GATEWAY, EGRESS_DESTINATION.
 * Messages match the OpenShift egress-router script word for word.
 */
import { die } from './errors.js';
import { canonicalIp, DOTTED_QUAD_SHAPE, ipFamily, parseCidr, type Family } from './ip.js';
import { parseIpLiteral } from './host.js';
import { tokenize } from './lines.js';
import { parsePort } from './port.js';

export type Protocol = 'tcp' | 'udp';

export interface PortMapping {
  readonly protocol: Protocol;
  readonly localPort: number;
  readonly ip: string;
  /** Defaults to localPort when the line has no remote port. */
  readonly remotePort: number;
}

export interface RedirectDestinations {
  readonly mappings: readonly PortMapping[];
  /** Every port not mapped goes here; without it they are refused. */
  readonly fallback?: string;
}

export interface Source {
  readonly address: string;
  readonly family: Family;
  /** The prefix given in EGRESS_SOURCE, if any (then the subnet is on-link). */
  readonly prefix?: number;
}

export interface RedirectConfig {
  readonly source: Source;
  readonly gateway: string;
  readonly destinations: RedirectDestinations;
}

export function parseSource(value: string | undefined): Source {
  return sourceOf(value) ?? die('EGRESS_SOURCE unspecified or invalid');
}

/** EGRESS_SOURCE (IP or IP/len); undefined when missing or invalid, for each reader's own message. */
export function sourceOf(value: string | undefined): Source | undefined {
  const c = value ? parseCidr(value.trim()) : undefined;
  if (!c) return undefined;
  const address = canonicalIp(c.address, c.family);
  const full = c.family === 4 ? 32 : 128;
  return value!.includes('/') && c.prefix !== full
    ? { address, family: c.family, prefix: c.prefix }
    : { address, family: c.family };
}

export function parseGateway(value: string | undefined, source: Source): string {
  const v = value?.trim() ?? '';
  const family = ipFamily(v);
  if (family === 0) die('EGRESS_GATEWAY unspecified or invalid');
  if (family !== source.family) {
    die(`EGRESS_GATEWAY '${v}' is IPv${family} but EGRESS_SOURCE is IPv${source.family}`);
  }
  return canonicalIp(v, family);
}

export function parseRedirectDestinations(value: string | undefined, family: Family): RedirectDestinations {
  if (!value || value.trim() === '') die('EGRESS_DESTINATION unspecified');
  const mappings: PortMapping[] = [];
  const used = new Set<string>();
  let fallback: string | undefined;
  for (const line of tokenize(value)) {
    if (fallback !== undefined) die('EGRESS_DESTINATION fallback IP must be the last line');
    const f = line.fields;
    const bad = (): never => die(`EGRESS_DESTINATION value '${line.text}' is invalid`);
    // The image's order: the line's form first, then the remote port, the
    // local port, the address itself, and last the port's uniqueness.
    if (f.length === 1) {
      if (!ipShape(f[0]!)) bad();
      fallback = destinationIp(f[0]!, family, line.text);
      continue;
    }
    if ((f.length !== 3 && f.length !== 4) || !/^\d+$/.test(f[0]!) || !/^(tcp|udp)$/.test(f[1]!) || !ipShape(f[2]!)) bad();
    if (f.length === 4 && !/^\d+$/.test(f[3]!)) bad();
    const remote = f.length === 4 ? parsePort(f[3]!) : undefined;
    const localPort = parsePort(f[0]!);
    const remotePort = remote ?? localPort;
    const ip = destinationIp(f[2]!, family, line.text);
    const protocol = f[1] as Protocol;
    // Keyed by protocol too: "53 tcp X" and "53 udp X" are distinct listeners.
    const key = `${protocol}/${localPort}`;
    if (used.has(key)) {
      die(`EGRESS_DESTINATION localport ${localPort} is already used, must be unique for each destination`);
    }
    used.add(key);
    mappings.push({ protocol, localPort, ip, remotePort });
  }
  if (mappings.length === 0 && fallback === undefined) die('EGRESS_DESTINATION unspecified');
  return fallback === undefined ? { mappings } : { mappings, fallback };
}

/** The image's IPv4 form, or (our extension) an IPv6 address. */
function ipShape(s: string): boolean {
  return DOTTED_QUAD_SHAPE.test(s) || ipFamily(s) === 6;
}

function destinationIp(s: string, family: Family, text: string): string {
  const ip = parseIpLiteral(s) ?? die(`EGRESS_DESTINATION value '${text}' is invalid`);
  if (ip.family !== family) {
    die(`EGRESS_DESTINATION value '${text}' is IPv${ip.family} but EGRESS_SOURCE is IPv${family}`);
  }
  return ip.address;
}

export function parseRedirectConfig(env: {
  EGRESS_SOURCE?: string;
  EGRESS_GATEWAY?: string;
  EGRESS_DESTINATION?: string;
}): RedirectConfig {
  const source = parseSource(env.EGRESS_SOURCE);
  const gateway = parseGateway(env.EGRESS_GATEWAY, source);
  const destinations = parseRedirectDestinations(env.EGRESS_DESTINATION, source.family);
  return { source, gateway, destinations };
}
