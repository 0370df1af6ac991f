/**
 * Keeps one name's addresses current: re-resolves in the background as the
 * TTL expires. Each name has its own Watcher, so a slow or dead name never
 * delays another. The bugs the OpenShift SDN resolver fixed one report at a
 * time are the rules here:
 *   - TTL clamped: a floor (no busy loop on TTL 0) and a ceiling (follow
 *     rotating CDN answers even when they advertise long TTLs);
 *   - a failed lookup keeps the last good addresses;
 *   - a name whose first lookup failed keeps being retried, with back-off.
 * Events: 'change' (addresses, previous) whenever the set changes, including
 * the first success; 'failure' (err, consecutiveFailures) on each failed
 * lookup (not 'error': an unhandled 'error' event would throw).
 */
import { EventEmitter } from 'node:events';
import { resolveName, type Resolution, type ResolveOptions } from './resolver.js';
import type { ResolvConf } from './resolv-conf.js';

export interface WatcherOptions extends ResolveOptions {
  /** Fixed settings, or a function asked before every lookup (a followed resolv.conf). */
  readonly conf: ResolvConf | (() => ResolvConf);
  /** TTL floor and ceiling, seconds. */
  readonly minTtl?: number;
  readonly maxTtl?: number;
  /** First retry delay after a failure, seconds; doubles up to maxTtl. */
  readonly retry?: number;
}

export const DEFAULT_MIN_TTL = 2;
export const DEFAULT_MAX_TTL = 60;

export function clampTtl(ttl: number, min = DEFAULT_MIN_TTL, max = DEFAULT_MAX_TTL): number {
  return Math.min(Math.max(ttl, min), max);
}

export function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export class Watcher extends EventEmitter {
  private current: string[] = [];
  private everResolved = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private inflight: Promise<void> | undefined;
  /** Lookups made and failed, for metrics (read at scrape time). */
  lookups = 0;
  lookupFailures = 0;

  constructor(readonly name: string, private readonly opts: WatcherOptions) { super(); }

  get addresses(): readonly string[] { return this.current; }
  /** True once any lookup has returned addresses. */
  get resolved(): boolean { return this.everResolved; }

  /** Starts the loop; resolves after the first lookup (success or not). */
  start(): Promise<void> {
    this.stopped = false;
    return this.tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Re-resolve now (e.g. every address failed its health check). */
  refresh(): Promise<void> {
    clearTimeout(this.timer);
    return this.tick();
  }

  private tick(): Promise<void> {
    this.inflight ??= this.lookup().finally(() => { this.inflight = undefined; });
    return this.inflight;
  }

  private async lookup(): Promise<void> {
    let next: number;
    this.lookups++;
    try {
      const c = this.opts.conf;
      const r: Resolution = await resolveName(typeof c === 'function' ? c() : c, this.name, this.opts);
      if (this.stopped) return;
      if (r.addresses.length === 0) throw new Error('no addresses');
      this.failures = 0;
      const prev = this.current;
      this.current = r.addresses;
      this.everResolved = true;
      if (!sameSet(prev, r.addresses)) this.emit('change', r.addresses, prev);
      next = clampTtl(r.ttl, this.opts.minTtl, this.opts.maxTtl);
    } catch (e) {
      if (this.stopped) return;
      this.lookupFailures++;
      this.failures++;
      // Keep the last good addresses: a DNS outage must not cut traffic.
      this.emit('failure', e, this.failures);
      const base = this.opts.retry ?? 1;
      next = Math.min(base * 2 ** (this.failures - 1), this.opts.maxTtl ?? DEFAULT_MAX_TTL);
    }
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.tick(), next * 1000);
      this.timer.unref?.();
    }
  }
}
