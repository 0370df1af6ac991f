/** Options of the HTTP proxy engine and the state its modules share. */
import type { Cidr } from '../../config/ip.js';
import type { FastpathWanted } from '../../config/fastpath.js';
import type { HttpPolicy } from '../../config/http-proxy.js';
import type { Fields, Logger } from '../../observe/log.js';
import type { CompiledPolicy } from './policy.js';
import type { ResolveFn } from '../../dns/lookup.js';

export interface HttpProxyOptions {
  readonly policy: HttpPolicy;
  readonly logger: Logger;
  /** Listen address (default 0.0.0.0) and port (default 8080; 0 picks one). */
  readonly host?: string;
  readonly port?: number;
  /** Host placement: bind outbound sockets to the egress source address. */
  readonly localAddress?: string;
  readonly debug?: boolean;
  readonly limits?: Partial<Limits>;
  /** Optional allow-list of client networks; undefined = everyone (the image's behaviour). */
  readonly clients?: readonly Cidr[];
  /** Optional ports CONNECT may reach; undefined = any port. */
  readonly connectPorts?: readonly number[];
  /** EGRESS_FASTPATH: accept on the native fast path (CONNECT tunnels relayed in C, other requests handed to front.ts). */
  readonly fastpath: FastpathWanted;
  /** For tests: a resolver other than the system's. */
  readonly resolve?: ResolveFn;
}

export interface Limits {
  /** Request line plus headers, in bytes (over: 431). */
  readonly maxHeaderBytes: number;
  /** Time for a client to send complete request headers (slowloris; over: 408 and close). */
  readonly headersTimeoutMs: number;
  /** Idle client connection between requests. */
  readonly keepAliveTimeoutMs: number;
  /** No bytes either way on a tunnel or an upstream request. */
  readonly idleTimeoutMs: number;
  /** TCP connect to the target (over: 504). */
  readonly connectTimeoutMs: number;
  /** Concurrent client connections (over: 503 and close). */
  readonly maxConnections: number;
  /** Idle pooled upstream connections are closed after this. */
  readonly upstreamKeepAliveMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  connectTimeoutMs: 10_000,
  maxConnections: 4096,
  upstreamKeepAliveMs: 30_000,
};

/**
 * Plain numbers bumped on the hot path; the metrics endpoint reads them at
 * scrape time (observe/metrics.ts). Decisions are counted per rule position:
 * index -1 is the default (`*` or no rule matched).
 */
export interface HttpStats {
  accepted: number;
  active: number;
  readonly refused: { limit: number; client: number; denied: number; port: number; error: number };
  bytesIn: number;
  bytesOut: number;
  readonly allowHits: number[];
  readonly denyHits: number[];
  allowDefault: number;
  denyDefault: number;
}

export function newHttpStats(): HttpStats {
  return { accepted: 0, active: 0, refused: { limit: 0, client: 0, denied: 0, port: 0, error: 0 }, bytesIn: 0, bytesOut: 0, allowHits: [], denyHits: [], allowDefault: 0, denyDefault: 0 };
}

export interface Runtime {
  /** Swapped whole by a reload: each request reads it once, so it sees one version. */
  policy: CompiledPolicy;
  /** Set when a drain starts: responses say `connection: close` and idle connections end. */
  draining: boolean;
  readonly stats: HttpStats;
  readonly resolve: ResolveFn;
  readonly limits: Limits;
  readonly logger: Logger;
  /** The per-request and per-tunnel lines (observe/log.ts infoWriter). */
  readonly access: { readonly request: (f: Fields) => void; readonly tunnel: (f: Fields) => void };
  readonly debug: boolean;
  readonly localAddress: string | undefined;
  readonly connectPorts: ReadonlySet<number> | undefined;
  readonly fastpath: FastpathWanted;
}
