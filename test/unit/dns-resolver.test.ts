// The resolver and the Watcher against a real DNS server (test/lab/dns-server.mjs) on loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { parseResolvConf } from '../../src/dns/resolv-conf.js';
import { resolveName, unionAnswers } from '../../src/dns/resolver.js';
import { clampTtl, Watcher } from '../../src/dns/watcher.js';

describe('resolv.conf', () => {
  it('reads nameservers and options with glibc limits', () => {
    const c = parseResolvConf('# c\nsearch x\nnameserver 10.0.0.1\nnameserver fd00::1 ; c\nnameserver bogus\noptions ndots:5 timeout:2 attempts:9\n');
    expect(c).toEqual({ nameservers: ['10.0.0.1', 'fd00::1'], timeoutMs: 2000, attempts: 5 });
  });
  it('defaults to the local nameserver, 5 s and 2 attempts', () => {
    expect(parseResolvConf('')).toEqual({ nameservers: ['127.0.0.1'], timeoutMs: 5000, attempts: 2 });
  });
  it('keeps at most three nameservers', () => {
    expect(parseResolvConf('nameserver 1.1.1.1\nnameserver 1.1.1.2\nnameserver 1.1.1.3\nnameserver 1.1.1.4\n').nameservers).toHaveLength(3);
  });
});

describe('TTL and union', () => {
  it('clamps to the floor and the ceiling', () => {
    expect(clampTtl(0, 2, 60)).toBe(2);
    expect(clampTtl(30, 2, 60)).toBe(30);
    expect(clampTtl(86400, 2, 60)).toBe(60);
  });
  it('takes the union of records with the minimum TTL', () => {
    expect(unionAnswers([{ addresses: ['10.0.0.2', '10.0.0.1'], ttl: 30 }, { addresses: ['10.0.0.3', '10.0.0.1'], ttl: 7 }, { addresses: [], ttl: undefined }]))
      .toEqual({ addresses: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], ttl: 7 });
  });
});

describe('resolver and watcher against a real DNS server', () => {
  let dns: DnsServer;
  const port = 19000 + (process.pid % 500);
  const conf = { nameservers: ['127.0.0.1'], timeoutMs: 500, attempts: 2 };
  beforeAll(async () => {
    dns = await startDnsServer(null, { address: '127.0.0.1', port, zone: {} });
  });
  afterAll(async () => { await dns?.stop(); });

  it('prefers A, uses AAAA only when asked and there is no A', async () => {
    dns.setZone({ 'a.example': { A: ['192.0.2.1'], AAAA: ['2001:db8::1'] }, 'six.example': { AAAA: ['2001:db8::6'], ttl: 9 } });
    expect(await resolveName(conf, 'a.example', { port, ipv6: true })).toEqual({ addresses: ['192.0.2.1'], ttl: 5 });
    expect((await resolveName(conf, 'six.example', { port })).addresses).toEqual([]);
    expect(await resolveName(conf, 'six.example', { port, ipv6: true })).toEqual({ addresses: ['2001:db8::6'], ttl: 9 });
  });

  it('asks every nameserver: union of their answers, minimum TTL, a dead one does not matter', async () => {
    // A second server on 127.0.0.2 knows part of the set with a shorter TTL; nothing answers on 127.0.0.3.
    const other = await startDnsServer(null, { address: '127.0.0.2', port, zone: { 'u.example': { A: ['192.0.2.21', '192.0.2.22'], ttl: 3 } } });
    try {
      dns.setZone({ 'u.example': { A: ['192.0.2.20', '192.0.2.21'], ttl: 8 } });
      const multi = { nameservers: ['127.0.0.3', '127.0.0.1', '127.0.0.2'], timeoutMs: 500, attempts: 1 };
      expect(await resolveName(multi, 'u.example', { port })).toEqual({ addresses: ['192.0.2.20', '192.0.2.21', '192.0.2.22'], ttl: 3 });
    } finally {
      await other.stop();
    }
  });

  it('fails after its attempts when no nameserver answers', async () => {
    const t0 = Date.now();
    await expect(resolveName({ nameservers: ['127.0.0.3'], timeoutMs: 300, attempts: 2 }, 'x.example', { port })).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('falls back to TCP when the UDP answer is truncated', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
    dns.setZone({ 'big.example': { A: many, truncate: true } });
    const r = await resolveName(conf, 'big.example', { port });
    expect(r.addresses).toHaveLength(40);
    // The server's log line travels through a pipe: it may trail the answer.
    await until(() => dns.queries().includes('query big.example A tcp'), 2000);
  });

  it('follows a changed record after its TTL and keeps the last good set when lookups fail', async () => {
    dns.setZone({ 'w.example': { A: ['192.0.2.10', '192.0.2.11'], ttl: 1 } });
    const w = new Watcher('w.example', { conf, port, minTtl: 1, maxTtl: 5, retry: 0.2 });
    const changes: string[][] = [];
    const failures: number[] = [];
    w.on('change', (a: string[]) => changes.push(a));
    w.on('failure', (_e: unknown, n: number) => failures.push(n));
    await w.start();
    expect(w.addresses).toEqual(['192.0.2.10', '192.0.2.11']);
    dns.setZone({ 'w.example': { A: ['192.0.2.12'], ttl: 1 } });
    await until(() => w.addresses[0] === '192.0.2.12', 4000);
    dns.setZone({ 'w.example': { rcode: 'SERVFAIL' } });
    await until(() => failures.length >= 1, 4000);
    expect(w.addresses).toEqual(['192.0.2.12']);
    w.stop();
    expect(changes).toEqual([['192.0.2.10', '192.0.2.11'], ['192.0.2.12']]);
  });

  it('keeps retrying a name whose first lookup failed, independently of the others', async () => {
    dns.setZone({ 'slow.example': { A: ['192.0.2.30'], delayMs: 3000 }, 'fast.example': { A: ['192.0.2.31'] } });
    // slow.example answers after the 500 ms timeout: its lookups time out.
    const stuck = new Watcher('slow.example', { conf, port, minTtl: 1, maxTtl: 5, retry: 5 });
    const slow = new Watcher('late.example', { conf, port, minTtl: 1, maxTtl: 5, retry: 0.2 });
    const fast = new Watcher('fast.example', { conf, port, minTtl: 1, maxTtl: 5 });
    const t0 = Date.now();
    const st = stuck.start();
    const s = slow.start();
    await fast.start();
    // The timing-out name did not hold up the other name.
    expect(Date.now() - t0).toBeLessThan(400);
    expect(fast.addresses).toEqual(['192.0.2.31']);
    await Promise.all([s, st]);
    expect(stuck.resolved).toBe(false);
    stuck.stop();
    expect(slow.resolved).toBe(false);
    dns.setZone({ 'late.example': { A: ['192.0.2.32'] }, 'fast.example': { A: ['192.0.2.31'] } });
    await until(() => slow.resolved, 4000);
    expect(slow.addresses).toEqual(['192.0.2.32']);
    slow.stop(); fast.stop();
  });
});

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
