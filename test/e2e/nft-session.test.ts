// The long-running nft session in a namespace of its own: acknowledgements,
// joined transactions, a bad line failing alone, restart after nft dies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { must, sh } from '../lab/sh.js';
import { NftSession } from '../../src/apply/nft-session.js';

const NS = `erl-${process.pid}-${randomBytes(2).toString('hex')}-nfts`;
const inNs = (...a: string[]) => ['ip', 'netns', 'exec', NS, ...a];
let session: NftSession;

async function elements(): Promise<string[]> {
  const r = await must(inNs('nft', '-j', 'list', 'set', 'inet', 't', 's'));
  const set = (JSON.parse(r).nftables as Array<{ set?: { elem?: Array<{ elem: { val: string } }> } }>).find((x) => x.set)!.set!;
  return (set.elem ?? []).map((e) => e.elem.val).sort();
}

beforeAll(async () => {
  await must(['ip', 'netns', 'add', NS]);
  await must(inNs('nft', 'add table inet t; add set inet t s { type ipv4_addr; flags timeout; }'));
  session = new NftSession({ argv: inNs('nft') });
});
afterAll(async () => {
  session?.close();
  await sh(['ip', 'netns', 'del', NS]);
});

describe('nft session', () => {
  it('resolves once the kernel has committed the line', async () => {
    await session.run('add element inet t s { 192.0.2.1 timeout 60s }');
    expect(await elements()).toEqual(['192.0.2.1']);
  });
  it('joins lines that queue up into fewer transactions, each caller acknowledged', async () => {
    const before = { ...session.counts };
    await Promise.all(Array.from({ length: 40 }, (_, i) => session.run(`add element inet t s { 198.51.100.${i} timeout 60s }`)));
    expect((await elements()).filter((e) => e.startsWith('198.51.100.'))).toHaveLength(40);
    expect(session.counts.lines - before.lines).toBe(40);
    expect(session.counts.transactions - before.transactions).toBeLessThan(40);
  });
  it('a bad line fails alone; the lines joined with it still commit', async () => {
    const results = await Promise.allSettled([
      session.run('add element inet t s { 203.0.113.1 timeout 60s }'),
      session.run('add element inet t s { 203.0.113.2 timeout 60s }'),
      session.run('add element inet t nosuchset { 203.0.113.3 timeout 60s }'),
      session.run('add element inet t s { 203.0.113.4 timeout 60s }'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[2] as PromiseRejectedResult).reason)).toMatch(/nft: Error/);
    expect((await elements()).filter((e) => e.startsWith('203.0.113.'))).toEqual(['203.0.113.1', '203.0.113.2', '203.0.113.4']);
  });
  it('starts a new nft when the old one died', async () => {
    // The process started for this session (ip netns exec becomes nft): ours to end.
    process.kill(session.pid!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
    await session.run('add element inet t s { 192.0.2.99 timeout 60s }');
    expect(await elements()).toContain('192.0.2.99');
  });
});
