/**
 * The HTTP proxy part's configuration from the environment: the rules
 * (grammar in http-proxy.ts), placement, client and CONNECT-port allow-lists,
 * listen address and limits. `httpProxyConfig` is what both `http-proxy` and
 * `check http-proxy` call, so they agree. The command's flags are merged into
 * these variables by the CLI; `from` names the flag a value came from, so a
 * message names what the operator typed.
 */
import { destinationValue, type Env } from './env.js';
import { die } from './errors.js';
import { FASTPATH_HELP, parseFastpath, type FastpathWanted } from './fastpath.js';
import { isHostname } from './host.js';
import { describeHttpPolicy, parseHttpProxyDestinations, type HttpPolicy } from './http-proxy.js';
import { ipFamily, parseCidr, type Cidr } from './ip.js';
import { parseInteger } from './int.js';
import { bindAddress, parsePlacement, type Placement } from './placement.js';

/** Limits that may be set; unset ones keep the engine's defaults. */
export interface HttpProxyLimits {
  maxConnections?: number;
  maxHeaderBytes?: number;
  headersTimeoutMs?: number;
  idleTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export interface HttpProxyConfig {
  readonly policy: HttpPolicy;
  readonly debug: boolean;
  readonly placement: Placement;
  /** Host placement: outbound sockets bind the egress source address. */
  readonly localAddress: string | undefined;
  readonly clients: readonly Cidr[] | undefined;
  readonly connectPorts: readonly number[] | undefined;
  readonly listen: string;
  readonly port: number;
  readonly limits: HttpProxyLimits;
  /** EGRESS_FASTPATH: accept (and relay CONNECT tunnels) on the native fast path. */
  readonly fastpath: FastpathWanted;
  /** EGRESS_HTTP_PROXY_DESTINATION_FILE and the text the rules were parsed from (a reload follows it). */
  readonly file: { readonly path: string; readonly text: string } | undefined;
}

/** Each flag of `http-proxy` and the variable it sets. */
export const HTTP_PROXY_FLAGS = {
  listen: ['--listen', 'EGRESS_HTTP_PROXY_LISTEN'],
  port: ['--port', 'EGRESS_HTTP_PROXY_PORT'],
  maxConnections: ['--max-connections', 'EGRESS_HTTP_PROXY_MAX_CONNECTIONS'],
  maxHeaderSize: ['--max-header-size', 'EGRESS_HTTP_PROXY_MAX_HEADER_SIZE'],
  headerTimeout: ['--header-timeout', 'EGRESS_HTTP_PROXY_HEADER_TIMEOUT'],
  idleTimeout: ['--idle-timeout', 'EGRESS_HTTP_PROXY_IDLE_TIMEOUT'],
  keepaliveTimeout: ['--keepalive-timeout', 'EGRESS_HTTP_PROXY_KEEPALIVE_TIMEOUT'],
  connectTimeout: ['--connect-timeout', 'EGRESS_HTTP_PROXY_CONNECT_TIMEOUT'],
  clients: ['--clients', 'EGRESS_HTTP_PROXY_CLIENTS'],
  connectPorts: ['--connect-ports', 'EGRESS_HTTP_PROXY_CONNECT_PORTS'],
} as const;

/** The --help table of `http-proxy`: every variable this part reads. */
export const HTTP_PROXY_VARS: Record<string, string> = {
  EGRESS_HTTP_PROXY_DESTINATION: 'rules, one a line: IP, CIDR, host, *.domain, each optionally !-prefixed; * last allows the rest',
  EGRESS_HTTP_PROXY_DESTINATION_FILE: 'read the rules from this file instead',
  EGRESS_HTTP_PROXY_CLIENTS: 'optional: client IPs/CIDRs allowed to use the proxy (space or comma separated; default everyone); flag --clients',
  EGRESS_HTTP_PROXY_CONNECT_PORTS: 'optional: ports CONNECT may reach, e.g. "443 8443" (default any); flag --connect-ports',
  EGRESS_HTTP_PROXY_DEBUG: 'set (non-empty) for debug logs',
  EGRESS_HTTP_PROXY_LISTEN: 'listen address (default 0.0.0.0); flag --listen',
  EGRESS_HTTP_PROXY_PORT: 'listen port (default 8080, 0 picks one); flag --port',
  EGRESS_HTTP_PROXY_MAX_CONNECTIONS: 'concurrent client connections; flag --max-connections',
  EGRESS_HTTP_PROXY_MAX_HEADER_SIZE: 'bytes of request line + headers; flag --max-header-size',
  EGRESS_HTTP_PROXY_HEADER_TIMEOUT: 'ms to send complete request headers; flag --header-timeout',
  EGRESS_HTTP_PROXY_IDLE_TIMEOUT: 'ms idle on a tunnel or upstream request; flag --idle-timeout',
  EGRESS_HTTP_PROXY_KEEPALIVE_TIMEOUT: 'ms idle client connection between requests; flag --keepalive-timeout',
  EGRESS_HTTP_PROXY_CONNECT_TIMEOUT: 'ms for the TCP connect to the target; flag --connect-timeout',
  EGRESS_FASTPATH: FASTPATH_HELP,
  EGRESS_PLACEMENT: "'pod' (default) or 'host': host placement binds outbound sockets to EGRESS_SOURCE",
  EGRESS_SOURCE: 'the egress source IP (IP or IP/len), used in host placement',
};

const LIMITS: readonly [keyof HttpProxyLimits, keyof typeof HTTP_PROXY_FLAGS][] = [
  ['maxConnections', 'maxConnections'], ['maxHeaderBytes', 'maxHeaderSize'], ['headersTimeoutMs', 'headerTimeout'],
  ['idleTimeoutMs', 'idleTimeout'], ['keepAliveTimeoutMs', 'keepaliveTimeout'], ['connectTimeoutMs', 'connectTimeout'],
];

/** The part's whole configuration; the rules first, as the image checks them first. */
export function httpProxyConfig(env: Env, from: Readonly<Record<string, string>> = {}): HttpProxyConfig {
  const name = (k: keyof typeof HTTP_PROXY_FLAGS) => from[HTTP_PROXY_FLAGS[k][1]] ?? HTTP_PROXY_FLAGS[k][1];
  const value = (k: keyof typeof HTTP_PROXY_FLAGS) => env[HTTP_PROXY_FLAGS[k][1]] || undefined;
  const int = (v: string, what: string, min: number, max: number) =>
    parseInteger(v, min, max) ?? die(`${what} '${v}' is invalid, must be a number from ${min} to ${max}`);

  const rulesText = destinationValue(env, 'EGRESS_HTTP_PROXY_DESTINATION');
  const policy = parseHttpProxyDestinations(rulesText);
  const filePath = env.EGRESS_HTTP_PROXY_DESTINATION_FILE;
  const placement = parsePlacement(env);
  const localAddress = bindAddress(env, placement);
  const clients = list(value('clients'))?.map((c) => parseCidr(c) ?? die(`Bad client address '${c}'`));
  const connectPorts = list(value('connectPorts'))?.map((p) => int(p, 'CONNECT port', 1, 65535));
  const limits: HttpProxyLimits = {};
  for (const [limit, k] of LIMITS) {
    const v = value(k);
    if (v !== undefined) limits[limit] = int(v, name(k), 1, 2 ** 31 - 1);
  }
  const port = value('port') === undefined ? 8080 : int(value('port')!, name('port'), 0, 65535);
  const listen = value('listen') ?? '0.0.0.0';
  if (ipFamily(listen) === 0 && !isHostname(listen)) die(`${name('listen')} '${listen}' is not an IP address or host name`);
  const fastpath = parseFastpath(env);
  return { policy, debug: !!env.EGRESS_HTTP_PROXY_DEBUG, placement, localAddress, clients, connectPorts, listen, port, limits, fastpath, file: filePath ? { path: filePath, text: rulesText ?? '' } : undefined };
}

function list(v: string | undefined): string[] | undefined {
  const items = (v ?? '').split(/[\s,]+/).filter(Boolean);
  return items.length ? items : undefined;
}

/** `check http-proxy`: the policy as the image printed its squid ACLs. */
export function describeHttpProxy(c: HttpProxyConfig): string[] {
  return [`policy (${c.policy.rules.length} rules, first match wins):`, ...describeHttpPolicy(c.policy).map((l) => '  ' + l)];
}
