/**
 * The variables every long-running command reads (lifecycle/runner.ts):
 * where the health and metrics endpoint listens, and how long a drain lasts.
 */
import type { Env } from './env.js';
import { die } from './errors.js';
import { ipFamily } from './ip.js';
import { parseInteger, parseSeconds } from './int.js';

export interface ServiceConfig {
  /** Off when undefined (the default). */
  readonly metrics: { readonly host: string; readonly port: number } | undefined;
  readonly drainSeconds: number;
}

export const SERVICE_VARS: Record<string, string> = {
  EGRESS_ROUTER_METRICS_ADDRESS: 'host:port of /healthz, /readyz and /metrics (off by default), e.g. 0.0.0.0:9464 or [::1]:9464',
  EGRESS_ROUTER_DRAIN_SECONDS: 'on SIGTERM, how long open connections may finish (default 30)',
};

export function serviceConfig(env: Env): ServiceConfig {
  const drain = env.EGRESS_ROUTER_DRAIN_SECONDS;
  const drainSeconds = drain ? parseSeconds(drain, 0) ?? die(`EGRESS_ROUTER_DRAIN_SECONDS '${drain}' is invalid, must be a number of seconds >= 0`) : 30;
  return { metrics: metricsAddress(env.EGRESS_ROUTER_METRICS_ADDRESS), drainSeconds };
}

function metricsAddress(v: string | undefined): ServiceConfig['metrics'] {
  if (!v) return undefined;
  const bad = (): never => die(`EGRESS_ROUTER_METRICS_ADDRESS '${v}' is invalid, must be host:port (IPv6 in brackets)`);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v.trim()) ?? bad();
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && ipFamily(host) !== 6) bad();
  const port = parseInteger(m[3]!, 0, 65535) ?? bad();
  return { host, port };
}
