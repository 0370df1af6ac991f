/**
 * The one process runner of every long-running command (daemon, run in
 * legacy mode, http-proxy, dns-proxy, firewall). It owns what the engines
 * must not: signals, readiness, the health/metrics endpoint, systemd's
 * notify protocol, following the configuration files, drain and exit.
 *
 *   start()            network set-up and engines; READY=1 only after it
 *   file change/SIGHUP validate, then apply or keep (RELOADING=1 ... READY=1)
 *   SIGTERM/SIGINT     /readyz 503 at once, STOPPING=1, engines close() (stop
 *                      accepting, let open connections finish) for up to
 *                      EGRESS_ROUTER_DRAIN_SECONDS, then destroy(); exit 0.
 *                      A second signal cuts the drain short.
 */
import { performance } from 'node:perf_hooks';
import type { ServiceConfig } from '../config/service.js';
import type { Logger } from '../observe/log.js';
import { createMetrics, type ConfigState } from '../observe/metrics.js';
import { startHealthServer, type HealthServer } from '../observe/health.js';
import { errorLine, type Engine } from './engine.js';
import { contentHash, followFile, type Follower } from './follow.js';
import { createNotifier } from './notify.js';
import { VERSION } from './version.js';

export interface RunOptions {
  readonly log: Logger;
  readonly env: NodeJS.ProcessEnv;
  readonly service: ServiceConfig;
  /** Network set-up and the engines' start: resolves once every listener is bound. */
  start(): Promise<Engine[]>;
  /** After the engines are closed (pending announcements and the like). */
  cleanup?(): void;
  /** File following (tests shorten them). */
  readonly debounceMs?: number;
  readonly pollMs?: number;
}

type Phase = 'starting' | 'running' | 'draining';

export async function runService(o: RunOptions): Promise<void> {
  const { log } = o;
  const notify = createNotifier(o.env, log);
  let phase: Phase = 'starting';
  let engines: Engine[] = [];
  const configs: ConfigState[] = [];
  const followers: Follower[] = [];
  let stop: (sig: string) => void = () => {};
  const stopped = new Promise<string>((r) => { stop = r; });
  let signals = 0;

  const missing = (): string[] => {
    if (phase === 'starting') return ['network set-up and listeners (starting)'];
    if (phase === 'draining') return ['draining (shutting down)'];
    return engines.flatMap((e) => e.missing().map((m) => `${e.name}: ${m}`));
  };
  const detail = () => ({
    config: Object.fromEntries(configs.map((c) => [c.engine, { generation: c.generation, hash: c.hash.slice(0, 16), lastReloadSuccessful: c.lastReloadOk, ...(c.lastError ? { lastReloadError: c.lastError } : {}) }])),
  });

  let health: HealthServer | undefined;
  if (o.service.metrics) {
    const metrics = createMetrics({
      stats: () => Promise.all(engines.map(async (e) => ({ engine: e.name, stats: await e.stats() }))),
      configs: () => configs,
      ready: () => missing().length === 0,
      draining: () => phase === 'draining',
    }, { version: VERSION });
    health = await startHealthServer(o.service.metrics, { missing, detail }, metrics);
    log.info({ address: `${o.service.metrics.host}:${health.port}` }, 'health and metrics endpoint listening (/healthz, /readyz, /metrics)');
  }

  const onStop = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) return stop(sig);
    log.warn({ signal: sig }, 'second signal: closing open connections now');
    for (const e of engines) e.destroy();
  };
  const onHup = () => {
    if (phase !== 'running') return;
    if (followers.length === 0) return void log.warn('SIGHUP: no configuration file to reload (values come from variables)');
    log.info('SIGHUP: reloading');
    for (const f of followers) void f.check(true, 'SIGHUP');
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  const keep = setInterval(() => {}, 1 << 30);

  try {
    try {
      engines = await o.start();
    } catch (e) {
      await health?.close();
      throw e;
    }
    for (const e of engines) {
      const state: ConfigState = { engine: e.name, generation: 1, hash: contentHash(e.follows?.text ?? ''), lastReloadOk: true, lastError: undefined, lastSuccessSeconds: Date.now() / 1000, reloads: { success: 0, failure: 0 } };
      configs.push(state);
      if (!e.follows) continue;
      const { path, varName, text, read, watchDir } = e.follows;
      const rejected = (err: string) => {
        state.lastReloadOk = false;
        state.lastError = err;
        state.reloads.failure++;
        log.error({ engine: e.name, file: path, err }, 'configuration not reloaded, keeping the running one');
      };
      followers.push(followFile({
        path, varName, initial: text, read, watchDir, debounceMs: o.debounceMs, pollMs: o.pollMs,
        onError: rejected,
        onChange: async (next, why) => {
          notify.send('RELOADING=1', `STATUS=reloading ${varName}`);
          const t0 = performance.now();
          const r = await e.reconfigure(next).catch((err: unknown) => ({ ok: false as const, error: errorLine(err) }));
          const ms = Math.round((performance.now() - t0) * 10) / 10;
          if (r.ok) {
            state.generation++;
            state.hash = contentHash(next);
            state.lastReloadOk = true;
            state.lastError = undefined;
            state.reloads.success++;
            state.lastSuccessSeconds = Date.now() / 1000;
            log.info({ engine: e.name, file: path, why, generation: state.generation, hash: state.hash.slice(0, 16), ms, summary: r.summary }, 'configuration reloaded');
          } else {
            rejected(r.error);
          }
          notify.send('READY=1', `STATUS=${status()}`);
        },
      }));
    }
    phase = 'running';
    notify.send('READY=1', `STATUS=${status()}`);
    const stopWatchdog = notify.startWatchdog();
    log.info({ engines: engines.map((e) => e.name) }, 'ready');

    const sig = await stopped;
    phase = 'draining';
    notify.send('STOPPING=1', 'STATUS=draining');
    stopWatchdog();
    for (const f of followers) f.close();
    log.info({ signal: sig, drainSeconds: o.service.drainSeconds }, 'draining: listeners closed, open connections may finish');
    let timer: NodeJS.Timeout | undefined;
    const over = await Promise.race([
      Promise.all(engines.map((e) => e.close())).then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), o.service.drainSeconds * 1000); }),
    ]);
    clearTimeout(timer);
    if (over) log.warn({ drainSeconds: o.service.drainSeconds }, 'drain time over: closing what is still open');
    for (const e of engines) e.destroy();
    o.cleanup?.();
    await health?.close();
    log.info({ signal: sig }, 'exiting');
  } finally {
    clearInterval(keep);
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
    process.off('SIGHUP', onHup);
  }
  // Whatever an engine library still holds (a resolver's timer, a pool) must not keep a stopped router alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 500).unref();

  function status(): string {
    return configs.map((c) => `${c.engine} generation ${c.generation}${c.lastReloadOk ? '' : ' (last reload rejected)'}`).join(', ');
  }
}
