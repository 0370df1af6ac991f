/**
 * HTTP proxy mode in the lab, under load and at its limits: large bodies both
 * ways (plain HTTP, chunked, CONNECT), the header-size and connection caps, the
 * tunnel idle timeout, and the byte counts of the per-request log lines.
 * Servers (test/lab/bulk.mjs serve, in the internet namespace) report what they
 * sent or received with a sha256; clients (curl, or bulk.mjs in the client
 * namespace) report what they got; the tests compare both ends.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A] = ADDR.inet as unknown as [string];
const BULK = join(ROOT, 'test/lab/bulk.mjs');
const HTTP = `${A}:8000`; // bulk.mjs HTTP server
// The same HTTP server, for uploads only: its POST answers close the connection,
// so every upload goes over a fresh upstream connection (no pooled one to reuse).
const UPLOAD = `${A}:8002`;
const TCP = `${A}:8001`; // bulk.mjs TCP server (CONNECT bulk)
const ECHO = `${A}:7000`; // the lab's echo server (greeting line, then echo)
const PROXY = `${ADDR.pod}:8080`; // --max-header-size 4096
const CAPPED = `${ADDR.pod}:8082`; // --max-connections 2
const IDLE = `${ADDR.pod}:8083`; // --idle-timeout 1000
const IDLE_MS = 1000;
const MiB = 1024 * 1024;

type Proc = Awaited<ReturnType<Lab['spawnReady']>>;
type Json = Record<string, unknown>;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jsonLines = (p: Proc): Json[] => p.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json);

/** Poll a process's JSON output lines until one matches (bounded). */
async function line(p: Proc, match: (l: Json) => boolean, ms = 3000): Promise<Json | undefined> {
  for (const end = Date.now() + ms; ; await sleep(50)) {
    const l = jsonLines(p).find(match);
    if (l || Date.now() > end) return l;
  }
}

describe('http-proxy limits and bulk transfers', () => {
  let lab: Lab;
  let server: Proc;
  let proxy: Proc;
  let dir: string;

  /** curl in the client namespace through a proxy, bounded by -m and the exec timeout. */
  const curl = (args: string[], proxyAddr = PROXY, max = 20) =>
    lab.exec('client', ['curl', '-sS', '-m', String(max), '-x', `http://${proxyAddr}`, ...args], { timeoutMs: (max + 5) * 1000 });

  /** Run bulk.mjs in the client namespace and parse its one JSON line. */
  async function client(args: string[], timeoutMs = 20_000): Promise<Json> {
    const r = await lab.exec('client', [process.execPath, BULK, ...args], { timeoutMs });
    expect(r.stdout, r.stderr).toMatch(/^\{/);
    return JSON.parse(r.stdout) as Json;
  }

  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'erl-limits-'));
    lab = await createLab({ echo: [ECHO] });
    server = await lab.spawnReady('inet', [process.execPath, BULK, 'serve', `${HTTP},${UPLOAD}`, TCP], 'ready');
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(init.code, init.stderr).toBe(0);
    const env = { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: '203.0.113.0/24' };
    const start = (port: string, ...flags: string[]) =>
      lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy', '--port', port, ...flags], 'http-proxy listening', { env });
    proxy = await start('8080', '--max-header-size', '4096');
    await start('8082', '--max-connections', '2');
    await start('8083', '--idle-timeout', String(IDLE_MS));
  }, 90_000);
  afterAll(async () => {
    await lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const proxyLine = (method: string, target: string) => line(proxy, (l) => (l.msg === 'request' || l.msg === 'tunnel') && l.method === method && l.target === target);

  it('large download (50 MiB, Content-Length): byte count and sha256 equal at both ends; log bytesOut', async () => {
    const n = 50 * MiB;
    const file = join(dir, 'down.bin');
    const r = await curl(['-o', file, '-w', '%{http_code} %{size_download}', `http://${HTTP}/bytes/${n}`]);
    expect(r.stdout, r.stderr).toBe(`200 ${n}`);
    const got = readFileSync(file);
    const sent = await line(server, (l) => l.get === `/bytes/${n}`);
    expect(sent).toMatchObject({ bytes: n, chunked: false });
    expect(got.length).toBe(n);
    expect(sha256(got)).toBe(sent!.sha);
    expect(await proxyLine('GET', `${HTTP}/bytes/${n}`)).toMatchObject({ status: 200, upstream: HTTP, bytesIn: 0, bytesOut: n });
  });

  it('chunked download (no Content-Length, uneven chunks) relayed intact and still chunked', async () => {
    const n = 10 * MiB + 12345;
    const file = join(dir, 'chunked.bin');
    const r = await curl(['-D', join(dir, 'chunked.hdr'), '-o', file, '-w', '%{http_code} %{size_download}', `http://${HTTP}/chunked/${n}`]);
    expect(r.stdout, r.stderr).toBe(`200 ${n}`);
    const hdr = readFileSync(join(dir, 'chunked.hdr'), 'latin1');
    expect(hdr).toMatch(/^transfer-encoding: chunked\r$/im);
    expect(hdr).not.toMatch(/^content-length:/im);
    const sent = await line(server, (l) => l.get === `/chunked/${n}`);
    expect(sent).toMatchObject({ bytes: n, chunked: true });
    const got = readFileSync(file);
    expect(got.length).toBe(n);
    expect(sha256(got)).toBe(sent!.sha);
    expect(await proxyLine('GET', `${HTTP}/chunked/${n}`)).toMatchObject({ status: 200, bytesIn: 0, bytesOut: n });
  });

  /*
   * Plain-HTTP uploads. Regressions these caught:
   * - the body counter once started the request stream flowing before undici
   *   read it: a 20 MiB POST got 502 (content-length mismatch), a chunked one
   *   arrived truncated with a 200, a 100 KB one arrived empty;
   * - "Expect: 100-continue" (curl's default above 1 MiB and for chunked
   *   bodies) was forwarded, and undici refuses it: 502.
   */
  describe('uploads', () => {
    const n = 20 * MiB;
    let file: string, sha: string, small: string, smallSha: string;
    beforeAll(() => {
      const data = randomBytes(n);
      file = join(dir, 'up.bin');
      writeFileSync(file, data);
      sha = sha256(data);
      small = join(dir, 'small.bin');
      writeFileSync(small, data.subarray(0, 100_000));
      smallSha = sha256(data.subarray(0, 100_000));
    });

    /** POST a file; the server answers "<bytes> <sha256>" and logs what it saw. */
    async function post(path: string, extra: string[], body = file) {
      const r = await curl(['-w', '\n%{http_code}', '--data-binary', `@${body}`, '-H', 'Content-Type: application/octet-stream', ...extra, `http://${UPLOAD}${path}`]);
      const lines = r.stdout.split('\n');
      return { status: Number(lines.pop()), body: lines.join('\n'), stderr: r.stderr };
    }

    it('100 KB POST with Content-Length reaches the server intact', async () => {
      const r = await post('/up/small', ['-H', 'Expect:'], small);
      expect(r, r.stderr).toMatchObject({ status: 200, body: `100000 ${smallSha}\n` });
      expect(await line(server, (l) => l.post === '/up/small')).toMatchObject({ bytes: 100_000, sha: smallSha, cl: '100000' });
    });

    it('20 MiB POST with Content-Length (no Expect): the server receives every byte; log bytesIn', async () => {
      const r = await post('/up/length', ['-H', 'Expect:']);
      expect(r, r.stderr).toMatchObject({ status: 200, body: `${n} ${sha}\n` });
      expect(await line(server, (l) => l.post === '/up/length')).toMatchObject({ bytes: n, sha, cl: String(n), te: null });
      expect(await proxyLine('POST', `${UPLOAD}/up/length`)).toMatchObject({ status: 200, bytesIn: n, bytesOut: `${n} ${sha}\n`.length });
    });

    it('20 MiB chunked POST (Transfer-Encoding: chunked, no Expect) relayed intact', async () => {
      const r = await post('/up/chunked', ['-H', 'Transfer-Encoding: chunked', '-H', 'Expect:']);
      expect(r, r.stderr).toMatchObject({ status: 200, body: `${n} ${sha}\n` });
      expect(await line(server, (l) => l.post === '/up/chunked')).toMatchObject({ bytes: n, sha, cl: null, te: 'chunked' });
      expect(await proxyLine('POST', `${UPLOAD}/up/chunked`)).toMatchObject({ status: 200, bytesIn: n });
    });

    it('20 MiB POST as curl sends it by default (Expect: 100-continue above 1 MiB)', async () => {
      const r = await post('/up/expect', []);
      expect(r, r.stderr).toMatchObject({ status: 200, body: `${n} ${sha}\n` });
      expect(await line(server, (l) => l.post === '/up/expect')).toMatchObject({ bytes: n, sha });
    });

    it('chunked POST as curl sends it by default (Expect: 100-continue)', async () => {
      const r = await post('/up/expect-chunked', ['-H', 'Transfer-Encoding: chunked']);
      expect(r, r.stderr).toMatchObject({ status: 200, body: `${n} ${sha}\n` });
      expect(await line(server, (l) => l.post === '/up/expect-chunked')).toMatchObject({ bytes: n, sha, te: 'chunked' });
    });
  });

  it('CONNECT bulk: 20 MiB each way at once through one tunnel, intact at both ends; log bytesOut', async () => {
    const n = 20 * MiB;
    const r = await client(['tunnel', PROXY, TCP, String(n), String(n)]);
    expect(r).toMatchObject({ status: 200, down: { bytes: n }, up: { bytes: n } });
    const seen = await line(server, (l) => l.tcp === true && l.sent === n);
    expect(seen).toMatchObject({ got: n });
    const down = r.down as { sha: string }, up = r.up as { sha: string };
    expect(down.sha).toBe(seen!.sentSha); // what the client read is what the server sent
    expect(up.sha).toBe(seen!.gotSha); // what the server read is what the client sent
    expect(r.report).toBe(`${n} ${up.sha}\n`);
    // To the client: the download and the server's report line (not the proxy's 200).
    const log = await proxyLine('CONNECT', TCP);
    expect(log).toMatchObject({ status: 200, upstream: TCP, bytesOut: n + (r.report as string).length });
  });

  // bytesIn once included the CONNECT request itself (the client socket's
  // bytesRead); it is the tunnel payload, as bytesOut is.
  // Reads the log line of the tunnel above.
  it('CONNECT log bytesIn is the tunnel payload from the client', async () => {
    const n = 20 * MiB;
    const log = await proxyLine('CONNECT', TCP);
    // The "<n>\n" request line and the upload.
    expect(log!.bytesIn).toBe(n + `${n}\n`.length);
  });

  it('431 when request headers exceed --max-header-size (plain and CONNECT); smaller ones pass', async () => {
    const big = `X-Big: ${'a'.repeat(8192)}`;
    const ok = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `X-Small: ${'b'.repeat(2048)}`, `http://${HTTP}/bytes/432`]);
    expect(ok.stdout, ok.stderr).toBe('200');
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', big, `http://${HTTP}/bytes/431`]);
    expect(r.stdout, r.stderr).toBe('431');
    const c = await curl(['-o', '/dev/null', '-w', '%{http_connect}', '-p', '--proxy-header', big, `http://${HTTP}/bytes/4310`]);
    expect(c.stdout).toBe('431');
    // The server saw the small-header request and neither oversized one.
    expect(await line(server, (l) => l.get === '/bytes/432')).toBeDefined();
    expect(jsonLines(server).filter((l) => l.get === '/bytes/431' || l.get === '/bytes/4310')).toEqual([]);
  });

  it('503 "too many connections" beyond --max-connections; served again once connections close', async () => {
    const status = async (path: string) => {
      const r = await curl(['-w', '\n%{http_code}', `http://${HTTP}${path}`], CAPPED, 5);
      const lines = r.stdout.split('\n');
      return { status: Number(lines.pop()), body: lines.join('\n') };
    };
    const hold = (...specs: string[]) => lab.spawnReady('client', [process.execPath, BULK, 'hold', CAPPED, ...specs], /held( \d+)+\n/, { timeoutMs: 10_000 });
    const release = async (p: Proc) => {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      expect(p.exitCode, 'hold client exits once its connections are closed').toBe(0);
    };

    // One held connection: a second one is still within the limit (no off-by-one).
    let h = await hold(`connect:${ECHO}`);
    expect(h.output()).toMatch(/^held 200$/m);
    expect(await status('/bytes/5')).toMatchObject({ status: 200 });
    await release(h);

    // Two held: an idle CONNECT tunnel and an idle keep-alive connection.
    h = await hold(`connect:${ECHO}`, `get:http://${HTTP}/bytes/10`);
    expect(h.output()).toMatch(/^held 200 200$/m);
    expect(await status('/bytes/503')).toEqual({ status: 503, body: 'too many connections\n' });
    const c = await curl(['-o', '/dev/null', '-w', '%{http_connect}', '-p', `http://${HTTP}/bytes/5030`], CAPPED, 5);
    expect(c.stdout).toBe('503');
    await release(h);
    expect(jsonLines(server).filter((l) => l.get === '/bytes/503' || l.get === '/bytes/5030')).toEqual([]);

    // Closed connections free their slots: served again (allow a moment for the closes to land).
    let after = await status('/bytes/6');
    for (let i = 0; i < 10 && after.status !== 200; i++) { await sleep(200); after = await status('/bytes/6'); }
    expect(after.status).toBe(200);
    // Both slots are free: two held again, as before.
    h = await hold(`connect:${ECHO}`, `connect:${ECHO}`);
    expect(h.output()).toMatch(/^held 200 200$/m);
    await release(h);
  });

  it(`tunnel idle timeout (${IDLE_MS} ms): an idle tunnel is closed in time, a busy one stays open`, async () => {
    const [idle, busy] = await Promise.all([
      client(['idle', IDLE, ECHO, String(6 * IDLE_MS)]),
      client(['active', IDLE, ECHO, '200', String(3 * IDLE_MS)]),
    ]);
    expect(idle).toMatchObject({ status: 200 });
    expect(idle.got).toMatch(new RegExp(`^${ECHO.replace(/\./g, '\\.')} sees `));
    expect(idle.closedAfterMs, 'the idle tunnel was never closed').not.toBeNull();
    expect(idle.closedAfterMs).toBeGreaterThanOrEqual(0.5 * IDLE_MS);
    expect(idle.closedAfterMs).toBeLessThanOrEqual(3 * IDLE_MS);
    expect(busy).toMatchObject({ status: 200, openAtEnd: true, closedAfterMs: null });
    expect(busy.sent).toBeGreaterThanOrEqual(10);
    // Echoes of all but possibly the last line in flight.
    expect(busy.echoed).toBeGreaterThanOrEqual((busy.sent as number) - 1);
  });
});
