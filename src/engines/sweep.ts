/**
 * Deadlines of many connections checked by one interval timer, instead of a
 * timer armed (and refreshed on every read and write) per connection: a
 * connection's timers were a measurable share of a short connection's cost
 * (docs/performance.md). Items are checked every `everyMs`; a deadline fires
 * between its time and one interval later. The interval runs only while
 * there are items, and never keeps the process alive.
 */
export interface Swept {
  /** Called on every sweep with performance.now(); may delete itself. */
  sweep(now: number): void;
}

export class Sweeper<T extends Swept> {
  private readonly items = new Set<T>();
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly everyMs: number) {}

  get size(): number { return this.items.size; }

  add(x: T): void {
    this.items.add(x);
    // Started on demand; stopped by a sweep that finds nothing (not on every
    // delete: a busy listener going from one connection to none and back
    // would re-arm the interval per connection).
    this.timer ??= setInterval(() => this.tick(), this.everyMs).unref();
  }

  delete(x: T): void { this.items.delete(x); }

  has(x: T): boolean { return this.items.has(x); }

  /** Every item, for a drain or a destroy. */
  values(): IterableIterator<T> { return this.items.values(); }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (this.items.size === 0) return this.close();
    const now = performance.now();
    for (const x of this.items) x.sweep(now);
  }
}

/** Sweep interval for deadlines of these lengths: a quarter of the shortest, 10 ms .. 1 s. */
export function sweepEvery(...ms: number[]): number {
  return Math.max(10, Math.min(1000, Math.floor(Math.min(...ms.filter((m) => m > 0)) / 4)));
}

/**
 * Idle detection without a timer: a connection is idle once the bytes it has
 * moved (read + written, counted by the socket anyway) stay the same for
 * `limitMs`. Holds the last count and when it changed.
 */
export class Progress {
  private seen = -1;
  private since = 0;

  /** True when `moved` has not changed for limitMs up to `now`. */
  stalled(moved: number, now: number, limitMs: number): boolean {
    if (moved !== this.seen) { this.seen = moved; this.since = now; return false; }
    return now - this.since >= limitMs;
  }
}
