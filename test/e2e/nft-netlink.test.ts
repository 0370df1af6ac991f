// Set elements over netlink (apply/nft-netlink.ts) in a namespace of its own,
// checked with `nft list set`: timeouts, refresh, IPv6, errors, large sets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { must, sh } from '../lab/sh.js';
import { ensureBuilt, ROOT } from '../unit/dist.js';

const NS = `erl-${process.pid}-${randomBytes(2).toString('hex')}-nfnl`;
const inNs = (...a: string[]) => ['ip', 'netns', 'exec', NS, ...a];
const WRITER = join(ROOT, 'dist/apply/nft-netlink.js');

/** Runs `body` (JS, with `w` a writer on inet t) in the namespace; prints what it returns. */
async function inside(body: string): Promise<string> {
  const code = `import { NftElementWriter } from ${JSON.stringify(WRITER)};
const w = new NftElementWriter('inet', 't');
try { const r = await (async () => { ${body} })(); console.log(JSON.stringify(r ?? 'ok')); }
catch (e) { console.log(JSON.stringify('error: ' + e.message)); } finally { w.close(); }`;
  const r = await sh(inNs(process.execPath, '--input-type=module', '-e', code), { timeoutMs: 60_000 });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function list(set: string): Promise<Map<string, number>> {
  const r = await must(inNs('nft', '-j', 'list', 'set', 'inet', 't', set));
  const s = (JSON.parse(r).nftables as Array<{ set?: { elem?: Array<{ elem: { val: string; timeout: number } }> } }>).find((x) => x.set)!.set!;
  return new Map((s.elem ?? []).map((e) => [e.elem.val, e.elem.timeout]));
}

beforeAll(async () => {
  await ensureBuilt();
  await must(['ip', 'netns', 'add', NS]);
  await must(inNs('nft', 'add table inet t; add set inet t s4 { type ipv4_addr; flags timeout; size 65536; }; add set inet t s6 { type ipv6_addr; flags timeout; }'));
});
afterAll(async () => { await sh(['ip', 'netns', 'del', NS]); });

describe('set elements over netlink', () => {
  it('writes joined in one batch: a bad one fails alone, the others commit', async () => {
    const r = await inside(`
      const rs = await Promise.allSettled([
        w.write([{ set: 's4', addresses: ['203.0.113.1'], timeoutMs: 9000 }]),
        w.write([{ set: 'nosuch', addresses: ['203.0.113.2'], timeoutMs: 9000 }]),
        w.write([{ set: 's4', addresses: ['203.0.113.3'], timeoutMs: 9000 }]),
      ]);
      return { status: rs.map((x) => x.status), counts: w.counts };`) as unknown as { status: string[]; counts: { batches: number; writes: number } };
    expect(r.status).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // One joined batch (refused), then each alone.
    expect(r.counts).toEqual({ batches: 4, writes: 6 });
    const s = await list('s4');
    expect([s.has('203.0.113.1'), s.has('203.0.113.2'), s.has('203.0.113.3')]).toEqual([true, false, true]);
  });
  it('adds elements with their timeout, IPv4 and IPv6, in one transaction', async () => {
    expect(await inside(`await w.write([{ set: 's4', addresses: ['192.0.2.1', '192.0.2.2'], timeoutMs: 40000 }, { set: 's6', addresses: ['2001:db8::1', 'fd00:128::10'], timeoutMs: 40000 }])`)).toBe('ok');
    expect(new Map([...await list('s4')].filter(([a]) => a.startsWith('192.0.2.')))).toEqual(new Map([['192.0.2.1', 40], ['192.0.2.2', 40]]));
    expect(await list('s6')).toEqual(new Map([['2001:db8::1', 40], ['fd00:128::10', 40]]));
  });
  it('a second write sets the new timeout, longer or shorter', async () => {
    await inside(`await w.write([{ set: 's4', addresses: ['192.0.2.1'], timeoutMs: 300000 }])`);
    expect((await list('s4')).get('192.0.2.1')).toBe(300);
    await inside(`await w.write([{ set: 's4', addresses: ['192.0.2.1'], timeoutMs: 7000 }])`);
    expect((await list('s4')).get('192.0.2.1')).toBe(7);
  });
  it('a missing set fails the whole transaction with a clear error', async () => {
    expect(await inside(`await w.write([{ set: 's4', addresses: ['198.51.100.7'], timeoutMs: 5000 }, { set: 'nosuch', addresses: ['198.51.100.8'], timeoutMs: 5000 }])`))
      .toMatch(/^error: nf_tables refused the element update: ENOENT/);
    expect((await list('s4')).has('198.51.100.7')).toBe(false);
  });
  it('costs the same on a 20000-element set; concurrent writes each get their acknowledgement', async () => {
    const r = await inside(`
      const big = [];
      for (let i = 0; i < 20000; i++) big.push('10.' + (100 + (i >> 16)) + '.' + ((i >> 8) & 255) + '.' + (i & 255));
      for (let i = 0; i < big.length; i += 1000) await w.write([{ set: 's4', addresses: big.slice(i, i + 1000), timeoutMs: 600000 }]);
      await Promise.all(Array.from({ length: 200 }, (_, i) => w.write([{ set: 's4', addresses: ['10.7.' + (i >> 8) + '.' + (i & 255)], timeoutMs: 60000 }])));
      return w.counts;`);
    // 20 sequential writes, then 200 concurrent ones joined into far fewer batches.
    expect((r as unknown as { writes: number }).writes).toBe(220);
    expect((r as unknown as { batches: number }).batches).toBeLessThan(60);
    const s = await list('s4');
    expect(s.size).toBeGreaterThanOrEqual(20200);
    expect(s.get('10.7.0.199')).toBe(60);
  });
});
