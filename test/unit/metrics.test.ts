/**
 * observe/metrics.ts: the engines' plain numbers become Prometheus samples at
 * scrape time, the same numbers on every scrape (published, never added
 * twice), with Prometheus's naming rules as promtool checks them.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createMetrics, type ConfigState } from '../../src/observe/metrics.js';
import type { EngineStats } from '../../src/lifecycle/engine.js';
import { sample } from '../lab/ops.js';

const stats: EngineStats = {
  listeners: [{ listener: 'http-proxy:8080', accepted: 7, active: 2, refused: { denied: 3, limit: 0 }, bytesIn: 100, bytesOut: 2000 }],
  decisions: [{ rule: '1', action: 'allow', count: 4 }, { rule: 'default', action: 'deny', count: 3 }],
  dns: [{ name: 'db.example', lookups: 5, failures: 1, addresses: 2 }],
  backends: [{ listener: 'dns-proxy:5432', up: 2, down: 1 }],
};
const config: ConfigState = { engine: 'http-proxy', generation: 3, hash: 'ab'.repeat(32), lastReloadOk: false, lastError: 'Bad destination', lastSuccessSeconds: 1700000000, reloads: { success: 2, failure: 1 } };

async function scrape(): Promise<string> {
  const m = createMetrics({ stats: async () => [{ engine: 'http-proxy', stats }], configs: () => [config], ready: () => true, draining: () => false }, { version: '0.1.0' });
  await m.refresh();
  const first = await m.registry.metrics();
  await m.refresh();
  const second = await m.registry.metrics();
  // Scraped twice: counters publish the engines' numbers, they do not add them again.
  expect(sample(second, 'egress_router_connections_accepted_total', { listener: 'http-proxy:8080' })).toBe(7);
  return first;
}

describe('metrics', () => {
  it('publishes the engines\' numbers with low-cardinality labels', async () => {
    const t = await scrape();
    expect(sample(t, 'egress_router_connections_accepted_total', { engine: 'http-proxy', listener: 'http-proxy:8080' })).toBe(7);
    expect(sample(t, 'egress_router_connections_active', { listener: 'http-proxy:8080' })).toBe(2);
    expect(sample(t, 'egress_router_connections_refused_total', { reason: 'denied' })).toBe(3);
    expect(sample(t, 'egress_router_client_sent_bytes_total')).toBe(2000);
    expect(sample(t, 'egress_router_policy_decisions_total', { rule: 'default', action: 'deny' })).toBe(3);
    expect(sample(t, 'egress_router_dns_lookup_failures_total', { name: 'db.example' })).toBe(1);
    expect(sample(t, 'egress_router_backend_addresses', { listener: 'dns-proxy:5432', state: 'down' })).toBe(1);
    expect(sample(t, 'egress_router_config_generation', { engine: 'http-proxy' })).toBe(3);
    expect(sample(t, 'egress_router_config_last_reload_successful', { engine: 'http-proxy' })).toBe(0);
    expect(sample(t, 'egress_router_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(sample(t, 'egress_router_config_info', { hash: 'abababababababab' })).toBe(1);
    expect(sample(t, 'egress_router_build_info', { version: '0.1.0' })).toBe(1);
    expect(sample(t, 'egress_router_ready')).toBe(1);
  });

  it('promtool check metrics accepts the text (no *_total gauges)', async () => {
    const t = await scrape();
    expect(t).not.toContain('nodejs_active_handles_total');
    const r = spawnSync('promtool', ['check', 'metrics'], { input: t, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
