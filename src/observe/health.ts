/**
 * The health and metrics endpoint (EGRESS_ROUTER_METRICS_ADDRESS):
 *   /healthz  200 while the process runs its event loop
 *   /readyz   200 when ready, else 503; a JSON body either way naming what is
 *             missing, and the last rejected reload (which does not make the
 *             router unready: the last good configuration is still served)
 *   /metrics  the Prometheus text format (observe/metrics.ts)
 */
import http from 'node:http';
import type { Metrics } from './metrics.js';

export interface HealthSource {
  /** What is missing (empty: ready). */
  missing(): string[];
  /** Extra readiness detail, e.g. rejected reloads. */
  detail(): Record<string, unknown>;
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHealthServer(addr: { host: string; port: number }, src: HealthSource, metrics: Metrics): Promise<HealthServer> {
  const { registry } = metrics;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      const missing = src.missing();
      return send(missing.length ? 503 : 200, 'application/json', JSON.stringify({ ready: missing.length === 0, missing, ...src.detail() }) + '\n');
    }
    if (path === '/metrics') {
      metrics.refresh().then(() => registry.metrics()).then((m) => send(200, registry.contentType, m), (e: Error) => send(500, 'text/plain', `${e.message}\n`));
      return;
    }
    send(404, 'text/plain', 'not found: /healthz, /readyz, /metrics\n');
  });
  // Scrapes must never hold a drain up.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as import('node:net').AddressInfo).port,
    close: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}
