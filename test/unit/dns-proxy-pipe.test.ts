// The user-space data path's piping on loopback, engine in-process: half-close,
// backpressure, idle timeout, connection cap, retry on the next address.
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startDnsProxy, type DnsProxy } from '../../src/engines/dns-proxy/index.js';
import { dnsProxyOptions } from '../../src/config/dns-proxy-options.js';
import { parseDnsProxyDestinations } from '../../src/config/dns-proxy.js';
import { createLogger } from '../../src/observe/log.js';

const BASE = 19100 + (process.pid % 40) * 20;
let n = 0;
const port = () => BASE + (n++ % 20);

const started: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const s of started.splice(0)) await s.close();
});

async function server(handler: (c: net.Socket) => void, p = port()): Promise<number> {
  const conns = new Set<net.Socket>();
  const s = net.createServer({ allowHalfOpen: true }, (c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => {});
    handler(c);
  });
  await new Promise<void>((r) => s.listen(p, '127.0.0.1', r));
  // A paused or half-open test socket would keep close() waiting: destroy them.
  started.push({ close: () => new Promise((r) => { for (const c of conns) c.destroy(); s.close(r); }) });
  return p;
}

async function proxy(table: string, env: Record<string, string> = {}): Promise<{ p: DnsProxy; logs: () => string }> {
  let logs = '';
  const sink = new PassThrough();
  sink.on('data', (d) => (logs += d));
  const p = await startDnsProxy({
    forwards: parseDnsProxyDestinations(table),
    options: dnsProxyOptions({ EGRESS_DNS_PROXY_DEBUG: '1', ...env }),
    log: createLogger({ level: 'debug', destination: sink }),
    resolvConf: { nameservers: ['127.0.0.1'], timeoutMs: 200, attempts: 1 },
    out: new PassThrough(),
  });
  started.push({ close: () => p.stop() });
  return { p, logs: () => logs };
}

function connect(p: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port: p, host: '127.0.0.1', allowHalfOpen: true });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

const readAll = (c: net.Socket) => new Promise<string>((resolve) => {
  let s = '';
  c.on('data', (d) => (s += d));
  c.once('end', () => resolve(s));
  c.once('close', () => resolve(s));
});

describe('user-space piping', () => {
  it('handles half-close: the remote still answers after the client has finished sending', async () => {
    const sp = await server((c) => {
      let got = '';
      c.on('data', (d) => (got += d));
      // Answer only after the client's FIN arrived.
      c.on('end', () => setTimeout(() => c.end(`got ${got}`), 100));
    });
    const lp = port();
    await proxy(`${lp} 127.0.0.1 ${sp}`);
    const c = await connect(lp);
    const reply = readAll(c);
    c.end('hello');
    expect(await reply).toBe('got hello');
  });

  it('applies backpressure: a remote that does not read stalls the client, the proxy does not buffer it all', async () => {
    const sp = await server((c) => c.pause());
    const lp = port();
    await proxy(`${lp} 127.0.0.1 ${sp}`);
    const c = await connect(lp);
    const chunk = Buffer.alloc(1 << 20);
    let sent = 0;
    // Bounded: at most 256 MiB offered, and stop at the first drain that does not come within 500 ms.
    for (let i = 0; i < 256; i++) {
      sent += chunk.length;
      if (!c.write(chunk)) {
        const drained = await Promise.race([new Promise((r) => c.once('drain', () => r(true))), new Promise((r) => setTimeout(() => r(false), 500))]);
        if (!drained) break;
      }
    }
    c.destroy();
    // Kernel socket buffers on loopback hold a few MiB each way; far from everything.
    expect(sent).toBeLessThan(64 << 20);
  });

  it('closes a connection idle for longer than the idle timeout, and says why', async () => {
    const sp = await server(() => {});
    const lp = port();
    const { logs } = await proxy(`${lp} 127.0.0.1 ${sp}`, { EGRESS_DNS_PROXY_IDLE_TIMEOUT: '0.3' });
    const c = await connect(lp);
    const t0 = Date.now();
    await readAll(c);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(2000);
    await new Promise((r) => setTimeout(r, 50));
    expect(logs()).toContain('"end":"idle timeout"');
  });

  it('a connection with traffic one way only is not idle', async () => {
    // The remote streams to the client for 0.6 s, past a 0.3 s idle timeout, the client never writes.
    const sp = await server((c) => {
      const t = setInterval(() => c.write('.'), 50);
      setTimeout(() => { clearInterval(t); c.end(); }, 600);
    });
    const lp = port();
    await proxy(`${lp} 127.0.0.1 ${sp}`, { EGRESS_DNS_PROXY_IDLE_TIMEOUT: '0.3' });
    const c = await connect(lp);
    expect((await readAll(c)).length).toBeGreaterThanOrEqual(10);
  });

  it('caps concurrent connections per listener', async () => {
    const sp = await server((c) => c.write('hi'));
    const lp = port();
    await proxy(`${lp} 127.0.0.1 ${sp}`, { EGRESS_DNS_PROXY_MAX_CONNECTIONS: '2' });
    const first = await Promise.all([connect(lp), connect(lp)]);
    await Promise.all(first.map((c) => new Promise((r) => c.once('data', r))));
    const third = await connect(lp);
    // Over the cap, the listener closes the connection without forwarding it.
    const got = await readAll(third);
    expect(got).toBe('');
    first.forEach((c) => c.destroy());
  });

  it('closes the client after a failed connect, marking the address down and saying why', async () => {
    // Retrying on the next address is asserted end to end (dead.example in test/e2e/dns-proxy.test.ts).
    const dead = port();
    const lp = port();
    const { logs } = await proxy(`${lp} 127.0.0.1 ${dead}`);
    const c = await connect(lp);
    expect(await readAll(c)).toBe('');
    await new Promise((r) => setTimeout(r, 50));
    expect(logs()).toContain('connect failed, address marked down');
    expect(logs()).toContain('"end":"all connect attempts failed"');
  });
});
