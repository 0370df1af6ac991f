/**
 * The tunnel's download half on real loopback sockets: bytes arrive intact
 * whichever buffer they were read into, and however many tunnels went quiet
 * after a large read, at most maxArmed chunks wait as read buffers.
 */
import net from 'node:net';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadTo, pumpStats } from '../../src/engines/http-proxy/pump.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('tunnel download pump', () => {
  let server: net.Server;
  let port = 0;
  const served: net.Socket[] = [];
  beforeAll(async () => {
    // Each connection gets `size` pseudo-random bytes (size from the client's first line), then stays open.
    server = net.createServer((s) => {
      served.push(s);
      s.once('data', (d) => {
        const size = Number(d.toString().trim());
        const body = Buffer.alloc(size);
        for (let i = 0; i < size; i++) body[i] = (i * 7919 + (i >> 8)) & 0xff;
        // The last 40 000 bytes a moment later, in one write: the tunnel's
        // final read is then a large one (which arms a chunk) on every run.
        const tail = Math.min(size, 40_000);
        s.write(body.subarray(0, size - tail));
        setTimeout(() => s.write(body.subarray(size - tail)), 20);
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => { for (const s of served) s.destroy(); await new Promise((r) => server.close(r)); });

  /** upstream (pumped) -> a PassThrough-like collector standing in for the client socket. */
  async function tunnel(size: number): Promise<{ got: Buffer; expected: Buffer; up: net.Socket }> {
    const chunks: Buffer[] = [];
    const sink = new net.Socket();
    // The pump writes to a socket; a writable that collects stands in for the client.
    const client = Object.assign(sink, { write: (b: Buffer, cb?: () => void) => { chunks.push(Buffer.from(b)); cb && setImmediate(cb); return true; } });
    const down = downloadTo(client as net.Socket);
    const up = net.connect({ port, host: '127.0.0.1', onread: down.onread } as net.NetConnectOpts);
    up.once('close', () => down.disarm());
    await new Promise<void>((r) => up.once('connect', () => r()));
    up.write(`${size}\n`);
    const expected = Buffer.alloc(size);
    for (let i = 0; i < size; i++) expected[i] = (i * 7919 + (i >> 8)) & 0xff;
    for (let i = 0; i < 500 && chunks.reduce((n, c) => n + c.length, 0) < size; i++) await new Promise((r) => setTimeout(r, 5));
    return { got: Buffer.concat(chunks), expected, up };
  }

  it('relays small and bulk transfers intact', async () => {
    for (const size of [10, 40_000, 3 * 1024 * 1024 + 17]) {
      const { got, expected, up } = await tunnel(size);
      expect(got.length).toBe(size);
      expect(sha(got)).toBe(sha(expected));
      up.destroy();
    }
  });

  it('bounds the chunks held by tunnels that went quiet after a large read', async () => {
    const { maxArmed } = pumpStats();
    const ups: net.Socket[] = [];
    for (let i = 0; i < maxArmed + 16; i++) {
      const { got, up } = await tunnel(200_000);
      expect(got.length).toBe(200_000);
      ups.push(up);
    }
    // Every quiet tunnel would hold a chunk; only maxArmed may.
    expect(pumpStats().armed).toBe(maxArmed);
    for (const u of ups) u.destroy();
    for (let i = 0; i < 100 && pumpStats().armed > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(pumpStats().armed).toBe(0);
  });
});
