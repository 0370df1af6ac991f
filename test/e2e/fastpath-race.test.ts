// The fast path's connect deadlines and races, which need an unanswered SYN:
// in a namespace of its own whose two black-hole addresses (on its loopback)
// drop every SYN by an nft rule, so nothing leaves the machine. The scenarios
// run inside it (test/lab/fastpath-run.mjs) and report what they saw.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { killNamespaces, ROOT, sweepStale } from '../lab/lab.js';
import { must, sh } from '../lab/sh.js';
import { ensureBuilt } from '../unit/dist.js';

const NS = `erl-${process.pid}-${randomBytes(2).toString('hex')}-fp`;
const HOLE = '10.77.0.2', HOLE2 = '10.77.0.3';
type Ev = [string, number, ...unknown[]];
interface Result { scenario: string; events: Ev[]; reply: string; synSentAfter: number; fdsLeft: number; quietUntil?: number; eventsByThen?: number }
const results = new Map<string, Result>();
let cancel: { during: number; after: number } | undefined;

beforeAll(async () => {
  await ensureBuilt();
  await sweepStale();
  await must(['ip', 'netns', 'add', NS]);
  const inNs = (...a: string[]) => ['ip', 'netns', 'exec', NS, ...a];
  await must(inNs('ip', 'link', 'set', 'lo', 'up'));
  for (const a of [HOLE, HOLE2]) await must(inNs('ip', 'addr', 'add', `${a}/32`, 'dev', 'lo'));
  await must(inNs('nft', `add table inet erl_fp; add chain inet erl_fp input { type filter hook input priority 0; }; add rule inet erl_fp input ip daddr { ${HOLE}, ${HOLE2} } tcp flags syn drop`));
  const r = await sh(inNs(process.execPath, join(ROOT, 'test/lab/fastpath-run.mjs'), HOLE, HOLE2), { timeoutMs: 30_000 });
  expect(r.stdout, r.stderr).toContain('"done":true');
  for (const line of r.stdout.trim().split('\n')) {
    const o = JSON.parse(line) as Result & { cancel?: typeof cancel };
    if (o.scenario) results.set(o.scenario, o);
    if (o.cancel) cancel = o.cancel;
  }
});
afterAll(async () => { await killNamespaces([NS]); });

const names = (r: Result) => r.events.map((e) => e[0]);
const ev = (r: Result, name: string) => r.events.find((e) => e[0] === name)!;

describe('fast path connect deadlines (unanswered SYNs in a namespace)', () => {
  it('an unanswered connect fails with ETIMEDOUT after timeoutMs, and the client gets the answer', () => {
    const r = results.get('timeout')!;
    expect(names(r)).toEqual(['accept', 'connectFailed', 'closed']);
    const f = ev(r, 'connectFailed');
    expect(f.slice(2)).toEqual([0, 'ETIMEDOUT']);
    expect(f[1]).toBeGreaterThanOrEqual(280);
    expect(f[1]).toBeLessThan(1000);
    expect(r.reply).toBe('HTTP/1.1 504 Gateway Timeout\r\n\r\n');
    expect(ev(r, 'closed')[2]).toBe('ended');
    expect([r.synSentAfter, r.fdsLeft]).toEqual([0, 0]);
  });

  it('connectSlow after raceMs; two racing attempts that both time out are reported once each', () => {
    const r = results.get('both-time-out')!;
    expect(names(r)).toEqual(['accept', 'connectSlow', 'connectFailed', 'connectFailed', 'closed']);
    expect(ev(r, 'connectSlow')[1]).toBeGreaterThanOrEqual(90);
    expect(ev(r, 'connectSlow')[1]).toBeLessThan(400);
    // Attempt 1 started ~100 ms in with 200 ms to live: it fails before attempt 0 (400 ms).
    expect(r.events.filter((e) => e[0] === 'connectFailed').map((e) => e.slice(2))).toEqual([[1, 'ETIMEDOUT'], [0, 'ETIMEDOUT']]);
    expect([r.synSentAfter, r.fdsLeft]).toEqual([0, 0]);
  });

  it('the race winner closes the loser: no SYN-SENT left, no event for the loser afterwards, the relay works', () => {
    const r = results.get('race')!;
    expect(names(r)).toEqual(['accept', 'connectSlow', 'connected', 'closed']);
    expect(ev(r, 'connectSlow')[2]).toBe(0);
    const won = ev(r, 'connected');
    expect(won[2]).toBe(1);
    expect(won[3]).toBe(0); // SYN-SENT sockets when connected() was called
    expect(r.reply).toBe('won');
    expect(ev(r, 'closed')[2]).toBe('closed');
    // The loser's 800 ms deadline has passed without a report.
    expect(r.quietUntil).toBeGreaterThanOrEqual(900);
    expect(r.eventsByThen).toBe(4);
    expect([r.synSentAfter, r.fdsLeft]).toEqual([0, 0]);
  });

  it('cancel() closes an attempt at once and nothing is reported for it', () => {
    expect(cancel).toEqual({ during: 1, after: 0 });
    const r = results.get('cancel')!;
    expect(names(r)).toEqual(['accept', 'closed']);
    expect(r.fdsLeft).toBe(0);
  });
});
