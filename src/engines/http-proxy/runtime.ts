/** Options of the HTTP proxy engine and the state its modules share. */
import type { Cidr } from '../../config/ip.js';
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

export interface Runtime {
  readonly policy: CompiledPolicy;
  readonly resolve: ResolveFn;
  readonly limits: Limits;
  readonly logger: Logger;
  /** The per-request and per-tunnel lines (observe/log.ts infoWriter). */
  readonly access: { readonly request: (f: Fields) => void; readonly tunnel: (f: Fields) => void };
  readonly debug: boolean;
  readonly localAddress: string | undefined;
  readonly connectPorts: ReadonlySet<number> | undefined;
}
