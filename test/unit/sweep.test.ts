import { describe, expect, it } from 'vitest';
import { Progress, Sweeper, sweepEvery } from '../../src/engines/sweep.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Sweeper: one interval for many deadlines', () => {
  it('fires each deadline once, between its time and one interval later, and lets an item remove itself', async () => {
    const s = new Sweeper<{ deadline: number; fired: number | undefined; sweep(now: number): void }>(20);
    const t0 = performance.now();
    const items = [50, 120, 400].map((ms) => ({
      deadline: t0 + ms, fired: undefined as number | undefined,
      sweep(now: number) { if (now >= this.deadline) { this.fired = now - t0; s.delete(this); } },
    }));
    for (const i of items) s.add(i);
    await sleep(200);
    expect(items[0]!.fired).toBeGreaterThanOrEqual(50);
    expect(items[0]!.fired).toBeLessThan(50 + 20 + 40); // one interval, plus scheduling slack
    expect(items[1]!.fired).toBeGreaterThanOrEqual(120);
    expect(items[2]!.fired).toBeUndefined();
    expect(s.size).toBe(1);
    s.delete(items[2]!);
    s.close();
  });

  it('stops its interval once empty and starts it again on demand', async () => {
    const s = new Sweeper<{ n: number; sweep(): void }>(10);
    const a = { n: 0, sweep() { this.n++; } };
    s.add(a);
    await sleep(60);
    expect(a.n).toBeGreaterThan(0);
    s.delete(a);
    await sleep(30); // a sweep that finds nothing stops the timer
    expect((s as unknown as { timer: unknown }).timer).toBeUndefined();
    const b = { n: 0, sweep() { this.n++; } };
    s.add(b);
    await sleep(60);
    expect(b.n).toBeGreaterThan(0);
    s.close();
  });

  it('sweepEvery: a quarter of the shortest positive deadline, within 10 ms .. 1 s', () => {
    expect(sweepEvery(10_000, 60_000)).toBe(1000);
    expect(sweepEvery(1000, 300_000)).toBe(250);
    expect(sweepEvery(0, 20)).toBe(10);
  });
});

describe('Progress: idle without a timer', () => {
  it('is stalled only when the count has not moved for the limit', () => {
    const p = new Progress();
    expect(p.stalled(0, 0, 100)).toBe(false);
    expect(p.stalled(0, 99, 100)).toBe(false);
    expect(p.stalled(5, 150, 100)).toBe(false); // moved: the clock restarts
    expect(p.stalled(5, 249, 100)).toBe(false);
    expect(p.stalled(5, 250, 100)).toBe(true);
  });
});
