/**
 * Prometheus metrics (prom-client 15). Engines count in plain numbers on
 * their hot paths (lifecycle/engine.ts stats objects); every metric here is
 * filled from those numbers in its collect() hook, at scrape time, so
 * turning metrics on costs the data path nothing (a labelled inc() is about
 * 150 ns). Labels are low-cardinality only: engine, listener (a configured
 * port), rule position, configured name, reason, result; never a client
 * address or a requested destination.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { EngineStats } from '../lifecycle/engine.js';

export interface ConfigState {
  readonly engine: string;
  generation: number;
  hash: string;
  lastReloadOk: boolean;
  lastError: string | undefined;
  lastSuccessSeconds: number;
  readonly reloads: { success: number; failure: number };
}

export interface MetricsSource {
  /** Each engine's numbers; the registry reads them once per scrape (see createMetrics' refresh). */
  stats(): Promise<readonly { readonly engine: string; readonly stats: EngineStats }[]>;
  configs(): readonly ConfigState[];
  ready(): boolean;
  draining(): boolean;
}

/** prom-client 15's default gauges whose names end in `_total`: promtool rejects them (a gauge must not look like a counter). */
const NOT_GAUGES = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface Metrics {
  readonly registry: Registry;
  /** Takes the engines' numbers for the next scrape (collect() hooks are synchronous readers of it). */
  refresh(): Promise<void>;
}

export function createMetrics(source: MetricsSource, build: { version: string }): Metrics {
  let snapshot: Awaited<ReturnType<MetricsSource['stats']>> = [];
  const src = { ...source, stats: () => snapshot };
  const register = new Registry();
  collectDefaultMetrics({ register });
  for (const n of NOT_GAUGES) register.removeSingleMetric(n);
  const registers = [register];

  new Gauge({ name: 'egress_router_build_info', help: 'Build information; always 1.', labelNames: ['version', 'nodejs'], registers })
    .set({ version: build.version, nodejs: process.version }, 1);
  gauge('egress_router_ready', 'Whether /readyz answers 200.', [], (g) => g.set(src.ready() ? 1 : 0));
  gauge('egress_router_draining', '1 from the moment a drain (SIGTERM) starts.', [], (g) => g.set(src.draining() ? 1 : 0));

  const listeners = () => src.stats().flatMap((e) => e.stats.listeners.map((l) => ({ engine: e.engine, l })));
  counter('egress_router_connections_accepted_total', 'Client connections accepted.', ['engine', 'listener'], (c) => {
    for (const { engine, l } of listeners()) c.inc({ engine, listener: l.listener }, l.accepted);
  });
  gauge('egress_router_connections_active', 'Client connections open now.', ['engine', 'listener'], (g) => {
    for (const { engine, l } of listeners()) g.set({ engine, listener: l.listener }, l.active);
  });
  counter('egress_router_connections_refused_total', 'Client connections or requests refused, by reason.', ['engine', 'listener', 'reason'], (c) => {
    for (const { engine, l } of listeners()) for (const [reason, n] of Object.entries(l.refused)) c.inc({ engine, listener: l.listener, reason }, n);
  });
  counter('egress_router_client_received_bytes_total', 'Bytes received from clients (counted as each connection ends).', ['engine', 'listener'], (c) => {
    for (const { engine, l } of listeners()) c.inc({ engine, listener: l.listener }, l.bytesIn);
  });
  counter('egress_router_client_sent_bytes_total', 'Bytes sent to clients (counted as each connection ends).', ['engine', 'listener'], (c) => {
    for (const { engine, l } of listeners()) c.inc({ engine, listener: l.listener }, l.bytesOut);
  });
  counter('egress_router_policy_decisions_total', 'Policy decisions by rule position (1-based, or "default") and action.', ['engine', 'rule', 'action'], (c) => {
    for (const e of src.stats()) for (const d of e.stats.decisions ?? []) c.inc({ engine: e.engine, rule: d.rule, action: d.action }, d.count);
  });
  counter('egress_router_dns_lookups_total', 'DNS lookups per configured name.', ['engine', 'name'], (c) => {
    for (const e of src.stats()) for (const d of e.stats.dns ?? []) c.inc({ engine: e.engine, name: d.name }, d.lookups);
  });
  counter('egress_router_dns_lookup_failures_total', 'Failed DNS lookups per configured name.', ['engine', 'name'], (c) => {
    for (const e of src.stats()) for (const d of e.stats.dns ?? []) c.inc({ engine: e.engine, name: d.name }, d.failures);
  });
  gauge('egress_router_dns_addresses', 'Addresses a configured name currently resolves to.', ['engine', 'name'], (g) => {
    for (const e of src.stats()) for (const d of e.stats.dns ?? []) g.set({ engine: e.engine, name: d.name }, d.addresses);
  });
  gauge('egress_router_backend_addresses', 'Backend addresses per listener by health state.', ['engine', 'listener', 'state'], (g) => {
    for (const e of src.stats()) for (const b of e.stats.backends ?? []) {
      g.set({ engine: e.engine, listener: b.listener, state: 'up' }, b.up);
      g.set({ engine: e.engine, listener: b.listener, state: 'down' }, b.down);
    }
  });
  counter('egress_router_dns_view_events_total', "The firewall's DNS view: queries, answers, learned, SERVFAILs, drops, by event.", ['engine', 'event'], (c) => {
    for (const e of src.stats()) for (const [event, n] of Object.entries(e.stats.dnsView ?? {})) if (event !== 'in_flight') c.inc({ engine: e.engine, event }, n);
  });
  gauge('egress_router_dns_view_queries_in_flight', "The firewall's DNS view: queries waiting for upstream or the set update.", ['engine'], (g) => {
    for (const e of src.stats()) if (e.stats.dnsView) g.set({ engine: e.engine }, e.stats.dnsView.in_flight ?? 0);
  });

  counter('egress_router_config_reloads_total', 'Configuration reloads by result.', ['engine', 'result'], (c) => {
    for (const s of src.configs()) { c.inc({ engine: s.engine, result: 'success' }, s.reloads.success); c.inc({ engine: s.engine, result: 'failure' }, s.reloads.failure); }
  });
  gauge('egress_router_config_generation', 'Generation of the running configuration (1 at start, +1 per applied reload).', ['engine'], (g) => {
    for (const s of src.configs()) g.set({ engine: s.engine }, s.generation);
  });
  gauge('egress_router_config_info', 'The running configuration: sha256 of its text (first 16 hex digits); always 1.', ['engine', 'hash'], (g) => {
    for (const s of src.configs()) g.set({ engine: s.engine, hash: s.hash.slice(0, 16) }, 1);
  });
  gauge('egress_router_config_last_reload_successful', 'Whether the last reload attempt was applied (1) or rejected (0).', ['engine'], (g) => {
    for (const s of src.configs()) g.set({ engine: s.engine }, s.lastReloadOk ? 1 : 0);
  });
  gauge('egress_router_config_last_reload_success_timestamp_seconds', 'When the running configuration was applied.', ['engine'], (g) => {
    for (const s of src.configs()) g.set({ engine: s.engine }, s.lastSuccessSeconds);
  });
  return { registry: register, refresh: async () => { snapshot = await source.stats(); } };

  function counter(name: string, help: string, labelNames: string[], fill: (c: Counter) => void): void {
    new Counter({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
  }
  function gauge(name: string, help: string, labelNames: string[], fill: (g: Gauge) => void): void {
    new Gauge({ name, help, labelNames, registers, collect() { this.reset(); fill(this); } });
  }
}
