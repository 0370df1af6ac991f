// The DNS view's forwarder on loopback, against the lab's real DNS server:
// answers equal a direct query's, the learn hook runs before an answer is
// released, and the bounds hold.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { startDnsServer, type DnsServer, type Zone } from '../lab/dns.js';
import { compileMatcher, DnsViewForwarder, type DnsViewOptions, type LearnHook } from '../../src/engines/firewall/dns-view/index.js';
import { createLogger } from '../../src/observe/log.js';

const ZONE: Zone = {
  'www.watched.test': { A: ['192.0.2.10', '192.0.2.11'], AAAA: ['2001:db8::10'], ttl: 7 },
  'alias.test': { CNAME: 'mid.test', ttl: 60 },
  'mid.test': { CNAME: 'www.watched.test', ttl: 60 },
  'a.wild.test': { A: ['192.0.2.20'], ttl: 3 },
  'a.b.wild.test': { A: ['192.0.2.21'], ttl: 3 },
  'other.test': { A: ['198.51.100.1'], ttl: 9 },
  'big.watched.test': { A: ['192.0.2.30', '192.0.2.31'], truncate: true, ttl: 4 },
  'slow.test': { A: ['198.51.100.2'], delayMs: 300 },
  'fail.test': { rcode: 'SERVFAIL' },
};
const RULES = ['www.watched.test', '*.wild.test', 'big.watched.test'];

const freePort = async (): Promise<number> => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
};

let seq = 0;
function query(name: string, type: 'A' | 'AAAA' = 'A', opts: { edns?: boolean; id?: number } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query', id: opts.id ?? (++seq & 0xffff), flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }],
    additionals: opts.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [] } as unknown as dnsPacket.Answer] : [],
  });
}

function udpAsk(port: number, msg: Buffer, timeoutMs = 2000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => { s.close(); resolve(undefined); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); });
    s.send(msg, port, '127.0.0.1');
  });
}

function tcpAsk(port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const head = Buffer.alloc(2);
    head.writeUInt16BE(msg.length);
    c.write(Buffer.concat([head, msg]));
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { c.destroy(); resolve(buf.subarray(2, 2 + buf.readUInt16BE(0))); }
    });
    c.on('error', reject);
  });
}

let dns: DnsServer;
let upPort: number;
const views: DnsViewForwarder[] = [];

async function view(learn: LearnHook, extra: Partial<DnsViewOptions> = {}): Promise<DnsViewForwarder> {
  const v = await DnsViewForwarder.start({
    host: '127.0.0.1', port: 0, upstreams: [{ address: '127.0.0.1', port: upPort }], matcher: compileMatcher(RULES), learn, ...extra,
  });
  views.push(v);
  return v;
}
const noLearn: LearnHook = async () => {};

beforeAll(async () => {
  upPort = await freePort();
  dns = await startDnsServer(null, { address: '127.0.0.1', port: upPort, zone: ZONE });
});
afterAll(async () => { await dns?.stop(); });
afterEach(() => { for (const v of views.splice(0)) v.destroy(); });

describe('answers through the view equal a direct query', () => {
  const cases: Array<[string, 'A' | 'AAAA', boolean]> = [
    ['www.watched.test', 'A', false], ['www.watched.test', 'AAAA', false], ['alias.test', 'A', false], ['alias.test', 'A', true],
    ['nx.test', 'A', false], ['nx.test', 'A', true], ['other.test', 'A', true], ['fail.test', 'A', false], ['A.Wild.Test', 'A', false],
  ];
  it.each(cases)('%s %s edns=%s over UDP and TCP', async (name, type, edns) => {
    const v = await view(noLearn);
    for (const ask of [udpAsk, tcpAsk]) {
      const direct = (await ask(upPort, query(name, type, { edns, id: 1 })))!;
      const via = (await ask(v.port, query(name, type, { edns, id: 0xbeef })))!;
      expect(via.readUInt16BE(0)).toBe(0xbeef);
      expect(via.subarray(2).toString('hex')).toBe(direct.subarray(2).toString('hex'));
      if (edns) expect(dnsPacket.decode(via).additionals?.[0]?.type).toBe('OPT');
    }
  });
  it('passes truncation through so the client retries over TCP, where the full answer comes', async () => {
    const learned: string[][] = [];
    const v = await view(async (_r, a) => { learned.push(a.map((x) => x.address)); });
    const u = dnsPacket.decode((await udpAsk(v.port, query('big.watched.test')))!);
    expect(u.flag_tc).toBe(true);
    expect(u.answers).toEqual([]);
    const direct = await tcpAsk(upPort, query('big.watched.test', 'A', { id: 3 }));
    const t = await tcpAsk(v.port, query('big.watched.test', 'A', { id: 4 }));
    expect(t.subarray(2)).toEqual(direct.subarray(2));
    expect(learned).toEqual([['192.0.2.30', '192.0.2.31']]);
  });
});

describe('learning before release', () => {
  it('calls learn with the rules, addresses and TTL, and completes it before the client has the answer', async () => {
    const events: string[] = [];
    const calls: unknown[] = [];
    const v = await view(async (rules, addrs, ttl) => {
      calls.push({ rules, addrs, ttl });
      await new Promise((r) => setTimeout(r, 20));
      events.push('learned');
    });
    for (const ask of [udpAsk, tcpAsk]) {
      const a = await ask(v.port, query('alias.test'));
      events.push('answer');
      expect(dnsPacket.decode(a!).answers?.map((x) => x.data)).toEqual(['mid.test', 'www.watched.test', '192.0.2.10', '192.0.2.11']);
    }
    expect(events).toEqual(['learned', 'answer', 'learned', 'answer']);
    expect(calls[0]).toEqual({ rules: ['www.watched.test'], addrs: [{ address: '192.0.2.10', family: 4 }, { address: '192.0.2.11', family: 4 }], ttl: 7 });
    await udpAsk(v.port, query('www.watched.test', 'AAAA'));
    expect(calls[2]).toEqual({ rules: ['www.watched.test'], addrs: [{ address: '2001:db8::10', family: 6 }], ttl: 7 });
    expect(v.stats).toMatchObject({ learned: 3, answers: 3, servfail_error: 0, servfail_timeout: 0 });
  });
  it('holds the answer while the hook is pending', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const v = await view(() => gate, { learnTimeoutMs: 5000 });
    let got: Buffer | undefined;
    const p = udpAsk(v.port, query('a.wild.test'), 5000).then((b) => (got = b));
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBeUndefined();
    release();
    await p;
    expect(dnsPacket.decode(got!).answers?.map((x) => x.data)).toEqual(['192.0.2.20']);
  });
  it('answers SERVFAIL when the hook fails or overruns its bound, counted and logged', async () => {
    const lines: string[] = [];
    const logger = createLogger({ destination: { write: (l: string) => { lines.push(l); return true; } } as unknown as NodeJS.WritableStream });
    const v = await view(async (rules) => {
      if (rules.includes('*.wild.test')) throw new Error('nft said no');
      await new Promise((r) => setTimeout(r, 1000));
    }, { learnTimeoutMs: 100, logger });
    for (const ask of [udpAsk, tcpAsk]) {
      expect(dnsPacket.decode((await ask(v.port, query('a.wild.test')))!).rcode).toBe('SERVFAIL');
      const slow = dnsPacket.decode((await ask(v.port, query('www.watched.test')))!);
      expect(slow).toMatchObject({ rcode: 'SERVFAIL', answers: [], questions: [{ name: 'www.watched.test', type: 'A' }] });
    }
    expect(v.stats).toMatchObject({ servfail_error: 2, servfail_timeout: 2, learned: 0 });
    // One line per kind and second: the first failure of each kind.
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toEqual(expect.arrayContaining([
      expect.objectContaining({ level: 40, msg: 'dns view set update failed, answered SERVFAIL', name: 'a.wild.test', rules: '*.wild.test', addresses: '192.0.2.20', err: 'nft said no' }),
      expect.objectContaining({ level: 40, msg: 'dns view set update failed, answered SERVFAIL', name: 'www.watched.test', err: 'no acknowledgement within 100 ms' }),
    ]));
    expect(logged).toHaveLength(2);
  });
  it('serialises concurrent lookups of one name; each answer follows its own update', async () => {
    const running = new Map<string, number>();
    let maxSame = 0, maxAll = 0, all = 0, completed = 0;
    const seen: number[] = [];
    const v = await view(async (rules) => {
      const k = rules.join();
      running.set(k, (running.get(k) ?? 0) + 1);
      all++;
      maxSame = Math.max(maxSame, running.get(k)!);
      maxAll = Math.max(maxAll, all);
      await new Promise((r) => setTimeout(r, 15));
      running.set(k, running.get(k)! - 1);
      all--;
      completed++;
    }, { learnTimeoutMs: 2000 });
    const asks = [];
    for (let i = 0; i < 10; i++) asks.push(udpAsk(v.port, query('www.watched.test'), 3000).then(() => seen.push(completed)));
    asks.push(udpAsk(v.port, query('a.wild.test'), 3000));
    await Promise.all(asks);
    expect(maxSame).toBe(1);
    // Another name is not held behind this one.
    expect(maxAll).toBe(2);
    // When the k-th answer arrived, at least k updates had completed.
    seen.forEach((c, k) => expect(c).toBeGreaterThanOrEqual(k + 1));
  });
  it('a hook that says the kernel has the addresses already releases at once, without an update', async () => {
    let called = 0;
    const hook: LearnHook = Object.assign(async () => { called++; }, { covered: (_r: readonly string[], a: readonly { address: string }[]) => a[0]!.address === '192.0.2.20' });
    const v = await view(hook);
    expect(dnsPacket.decode((await udpAsk(v.port, query('a.wild.test')))!).answers?.[0]?.data).toBe('192.0.2.20');
    expect(called).toBe(0);
    await udpAsk(v.port, query('www.watched.test'));
    expect(called).toBe(1);
    expect(v.stats).toMatchObject({ learned: 2, learned_covered: 1 });
  });
  it('names outside every rule pass untouched and call nothing', async () => {
    let called = 0;
    const v = await view(async () => { called++; });
    for (const name of ['other.test', 'a.b.wild.test', 'wild.test', 'nx.test', 'watched.test']) {
      const direct = (await udpAsk(upPort, query(name, 'A', { id: 9 })))!;
      expect((await udpAsk(v.port, query(name, 'A', { id: 9 })))!).toEqual(direct);
    }
    expect(called).toBe(0);
    expect(v.stats.learned).toBe(0);
  });
  it('a policy change applies to the next answers', async () => {
    let called = 0;
    const v = await view(async () => { called++; });
    await udpAsk(v.port, query('other.test'));
    v.setMatcher(compileMatcher(['other.test']));
    await udpAsk(v.port, query('other.test'));
    expect(called).toBe(1);
  });
});

describe('bounds', () => {
  it('drops and counts malformed packets and keeps serving', async () => {
    const v = await view(noLearn);
    const resp = Buffer.from(query('other.test'));
    resp.writeUInt16BE(0x8100, 2); // QR: a response sent as a query
    const bad = [Buffer.from([1, 2, 3]), Buffer.alloc(200, 0xff), resp, Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1])])];
    for (const b of bad) expect(await udpAsk(v.port, b, 150)).toBeUndefined();
    // Over TCP too, on a connection that then asks a good question.
    const ok = await new Promise<Buffer>((resolve) => {
      const c = net.connect(v.port, '127.0.0.1');
      const frame = (m: Buffer) => { const h = Buffer.alloc(2); h.writeUInt16BE(m.length); return Buffer.concat([h, m]); };
      c.write(Buffer.concat([frame(Buffer.from([9, 9, 9])), frame(query('other.test'))]));
      c.on('data', (d) => { c.destroy(); resolve(d.subarray(2)); });
    });
    expect(dnsPacket.decode(ok).answers?.[0]?.data).toBe('198.51.100.1');
    expect(v.stats.malformed).toBe(5);
    expect(dnsPacket.decode((await udpAsk(v.port, query('other.test')))!).answers?.[0]?.data).toBe('198.51.100.1');
  });
  it('caps queries in flight: beyond it drops (default) or answers SERVFAIL', async () => {
    for (const overload of ['drop', 'servfail'] as const) {
      const v = await view(noLearn, { maxInFlight: 4, overload });
      const answers = await Promise.all(Array.from({ length: 10 }, () => udpAsk(v.port, query('slow.test'), 1500)));
      const ok = answers.filter((a) => a && dnsPacket.decode(a).rcode === 'NOERROR').length;
      const sf = answers.filter((a) => a && dnsPacket.decode(a).rcode === 'SERVFAIL').length;
      expect([ok, sf]).toEqual(overload === 'drop' ? [4, 0] : [4, 6]);
      expect(v.stats.dropped_overload).toBe(6);
      expect(v.stats.in_flight).toBe(0);
    }
  });
  it('an upstream that does not answer gets SERVFAIL within the bound', async () => {
    const dead = await freePort();
    const v = await view(noLearn, { upstreams: [{ address: '127.0.0.1', port: dead }], upstreamTimeoutMs: 100, upstreamAttempts: 2 });
    const t0 = Date.now();
    expect(dnsPacket.decode((await udpAsk(v.port, query('other.test')))!).rcode).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(v.stats.servfail_upstream).toBe(1);
  });
  it('close() answers what is in flight and takes no more; destroy() stops at once', async () => {
    const v = await view(noLearn);
    const pending = udpAsk(v.port, query('slow.test'));
    await new Promise((r) => setTimeout(r, 50));
    const closing = v.close();
    expect(await udpAsk(v.port, query('other.test'), 150)).toBeUndefined();
    expect(dnsPacket.decode((await pending)!).answers?.[0]?.data).toBe('198.51.100.2');
    await closing;
    const w = await view(noLearn);
    const lost = udpAsk(w.port, query('slow.test'), 600);
    await new Promise((r) => setTimeout(r, 50));
    w.destroy();
    expect(await lost).toBeUndefined();
    expect(w.stats.in_flight).toBe(0);
  });
});
