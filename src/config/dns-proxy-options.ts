/**
 * The DNS proxy part's configuration from the environment: the destination
 * lines (grammar in dns-proxy.ts) and the engine's settings. `dnsProxyConfig`
 * is what both `dns-proxy` and `check dns-proxy` call, so they agree.
 */
import { parseDnsProxyDestinations, type DnsProxyForward } from './dns-proxy.js';
import { destinationValue, type Env } from './env.js';
import { die } from './errors.js';
import { parseInteger, parseSeconds } from './int.js';
import { bindAddress, parsePlacement, type Placement } from './placement.js';
import { FASTPATH_HELP, parseFastpath, type FastpathWanted } from './fastpath.js';

/**
 * 'auto': per line, by what each path can guarantee. A name's line goes to
 * user space, which retries a refused or unanswered connect on the next
 * address (a kernel DNAT cannot re-send a SYN elsewhere, so it loses the
 * connections that reach a freshly-dead address); an IP line goes to the
 * kernel, where there is no other address to retry on anyway and bytes are
 * not copied through user space.
 */
export type DataPath = 'auto' | 'kernel' | 'userspace';

export interface DnsProxyOptions {
  readonly dataPath: DataPath;
  readonly debug: boolean;
  readonly ipv6: boolean;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly minTtl: number;
  readonly maxTtl: number;
  /** Host placement: bind outbound connections to the egress source IP. */
  readonly bindSource: string | undefined;
  readonly healthIntervalMs: number;
  /** The user-space path on the native fast path or on Node sockets (EGRESS_FASTPATH). */
  readonly fastpath: FastpathWanted;
}

export interface DnsProxyConfig {
  readonly placement: Placement;
  readonly forwards: readonly DnsProxyForward[];
  readonly options: DnsProxyOptions;
  /** EGRESS_DNS_PROXY_DESTINATION_FILE and the text the lines were parsed from (a reload follows it). */
  readonly file: { readonly path: string; readonly text: string } | undefined;
}

/** Each flag of `dns-proxy` and the variable it sets (--debug sets '1'). */
export const DNS_PROXY_FLAGS = {
  mode: ['--mode', 'EGRESS_DNS_PROXY_MODE'],
  debug: ['--debug', 'EGRESS_DNS_PROXY_DEBUG'],
} as const;

/** The --help table of `dns-proxy`: every variable this part reads. */
export const DNS_PROXY_VARS: Record<string, string> = {
  EGRESS_DNS_PROXY_DESTINATION: "'<port> <ip-or-name> [<remote_port>]' per line",
  EGRESS_DNS_PROXY_DESTINATION_FILE: 'read the destination lines from this file instead',
  EGRESS_DNS_PROXY_MODE: "'auto' (default in pod placement: IP lines on nft DNAT, name lines in user space, which retries a dead address), 'kernel' (every line on nft DNAT: faster, but connections to a freshly-dead address fail until its health check), 'userspace' (every line; default in host placement or with EGRESS_DNS_PROXY_DEBUG=1); flag --mode",
  EGRESS_DNS_PROXY_DEBUG: "'1': one line per connection and per changed address set; flag --debug",
  EGRESS_DNS_PROXY_IPV6: "'1': use AAAA records for names without A records",
  EGRESS_DNS_PROXY_CONNECT_TIMEOUT: 'seconds to connect to a remote address (default 10)',
  EGRESS_DNS_PROXY_IDLE_TIMEOUT: 'seconds without traffic before a connection is closed (default 3600, 0 = never)',
  EGRESS_DNS_PROXY_MAX_CONNECTIONS: 'concurrent connections per listener (default 10000)',
  EGRESS_DNS_PROXY_TTL_MIN: 'floor of the re-resolution interval, seconds (default 2)',
  EGRESS_DNS_PROXY_TTL_MAX: 'ceiling of the re-resolution interval, seconds (default 60)',
  EGRESS_DNS_PROXY_HEALTH_INTERVAL: 'kernel path (IP lines in auto mode): seconds between health checks (default 2)',
  EGRESS_FASTPATH: `user-space path: ${FASTPATH_HELP}`,
  EGRESS_PLACEMENT: "'pod' (default) or 'host' (outbound connections bind EGRESS_SOURCE)",
  EGRESS_SOURCE: 'the egress source IP (IP or IP/len), bound in host placement',
};

function seconds(env: Env, name: string, def: number, min: number): number {
  const v = env[name];
  if (v === undefined || v === '') return def;
  return parseSeconds(v, min) ?? die(`${name} '${v}' is invalid, must be a number >= ${min}`);
}

function count(env: Env, name: string, def: number, min: number): number {
  const v = env[name];
  if (v === undefined || v === '') return def;
  return parseInteger(v, min, Number.MAX_SAFE_INTEGER) ?? die(`${name} '${v}' is invalid, must be a number >= ${min}`);
}

const flag = (v: string | undefined) => v === '1' || v === 'true';

/** The part's whole configuration; the destinations first, as the image checks them first. */
export function dnsProxyConfig(env: Env): DnsProxyConfig {
  const text = destinationValue(env, 'EGRESS_DNS_PROXY_DESTINATION');
  const forwards = parseDnsProxyDestinations(text);
  const placement = parsePlacement(env);
  const path = env.EGRESS_DNS_PROXY_DESTINATION_FILE;
  return { placement, forwards, options: dnsProxyOptions(env, placement), file: path ? { path, text: text ?? '' } : undefined };
}

export function dnsProxyOptions(env: Env, placement: Placement = parsePlacement(env)): DnsProxyOptions {
  const debug = flag(env.EGRESS_DNS_PROXY_DEBUG);
  // 'auto' by default: no connection lost when one of a name's addresses
  // dies (issue 9), kernel speed for IP lines (docs/dns-proxy.md has the
  // measurements). User space for every line where the kernel path cannot
  // do the job: host placement (DNAT there would capture the node's own
  // traffic) and per-connection debug lines (conntrack keeps no log).
  const requested = env.EGRESS_DNS_PROXY_MODE || 'auto';
  if (requested !== 'auto' && requested !== 'kernel' && requested !== 'userspace') die(`EGRESS_DNS_PROXY_MODE '${requested}' is invalid, must be 'auto', 'userspace' or 'kernel'`);
  if (requested === 'kernel' && placement === 'host') die("EGRESS_DNS_PROXY_MODE 'kernel' needs EGRESS_PLACEMENT 'pod'");
  const mode: DataPath = requested === 'auto' && (placement === 'host' || debug) ? 'userspace' : requested;
  const minTtl = seconds(env, 'EGRESS_DNS_PROXY_TTL_MIN', 2, 1);
  const options: DnsProxyOptions = {
    dataPath: mode,
    debug,
    ipv6: flag(env.EGRESS_DNS_PROXY_IPV6),
    connectTimeoutMs: seconds(env, 'EGRESS_DNS_PROXY_CONNECT_TIMEOUT', 10, 0.1) * 1000,
    idleTimeoutMs: seconds(env, 'EGRESS_DNS_PROXY_IDLE_TIMEOUT', 3600, 0) * 1000,
    maxConnections: count(env, 'EGRESS_DNS_PROXY_MAX_CONNECTIONS', 10_000, 1),
    minTtl,
    maxTtl: seconds(env, 'EGRESS_DNS_PROXY_TTL_MAX', 60, minTtl),
    bindSource: bindAddress(env, placement),
    healthIntervalMs: seconds(env, 'EGRESS_DNS_PROXY_HEALTH_INTERVAL', 2, 0.1) * 1000,
    fastpath: parseFastpath(env),
  };
  return options;
}
