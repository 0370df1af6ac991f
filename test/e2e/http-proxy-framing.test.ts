/**
 * HTTP proxy framing on the client side, byte for byte: what a raw client
 * receives for each upstream framing (Content-Length, chunked, close-delimited,
 * 204, 304, HEAD), for HTTP/1.1 and HTTP/1.0 clients, pipelined requests,
 * Connection: close, and the requests the proxy must refuse because client and
 * proxy could disagree on where they end (request smuggling).
 * Upstream and raw client: test/lab/framing.mjs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A] = ADDR.inet as unknown as [string];
const FRAMING = join(ROOT, 'test/lab/framing.mjs');
const UP = `${A}:8000`;
const PROXY = `${ADDR.pod}:8080`;

describe('http-proxy client-side framing', () => {
  let lab: Lab;
  let proxy: Awaited<ReturnType<Lab['spawnReady']>>;

  /** Send raw bytes to the proxy; the reply text and whether the proxy closed. */
  async function raw(request: string, quietMs = 400): Promise<{ reply: string; closed: boolean }> {
    const r = await lab.exec('client', [process.execPath, FRAMING, 'raw', PROXY, Buffer.from(request, 'latin1').toString('base64'), String(quietMs)], { timeoutMs: 15_000 });
    expect(r.stdout, r.stderr).toMatch(/^\{/);
    return JSON.parse(r.stdout) as { reply: string; closed: boolean };
  }
  const get = (path: string, extra = '', version = '1.1', method = 'GET') =>
    `${method} http://${UP}${path} HTTP/${version}\r\nHost: ${UP}\r\n${extra}\r\n`;
  /** Split a reply into responses: [head, body] pairs, framing decoded from the head. */
  function responses(text: string): Array<{ head: string; body: string }> {
    const out: Array<{ head: string; body: string }> = [];
    let rest = text;
    while (rest.length > 0) {
      const e = rest.indexOf('\r\n\r\n');
      if (e < 0) throw new Error(`no head end in ${JSON.stringify(rest)}`);
      const head = rest.slice(0, e);
      rest = rest.slice(e + 4);
      const cl = /\r\ncontent-length: (\d+)/i.exec(head);
      const noBody = / (204|304) /.test(head.split('\r\n')[0]!) || head.includes('x-kind: head');
      if (noBody) { out.push({ head, body: '' }); continue; }
      if (cl) { out.push({ head, body: rest.slice(0, Number(cl[1])) }); rest = rest.slice(Number(cl[1])); continue; }
      if (/\r\ntransfer-encoding: chunked/i.test(head)) {
        let body = '';
        for (;;) {
          const le = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, le), 16);
          rest = rest.slice(le + 2);
          if (n === 0) { rest = rest.slice(2); break; }
          body += rest.slice(0, n);
          rest = rest.slice(n + 2);
        }
        out.push({ head, body });
        continue;
      }
      out.push({ head, body: rest });
      rest = '';
    }
    return out;
  }

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab();
    await lab.spawnReady('inet', [process.execPath, FRAMING, 'serve', UP], 'ready');
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(init.code, init.stderr).toBe(0);
    const env = { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: `${A}/32` };
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy'], 'http-proxy listening', { env });
  }, 90_000);
  afterAll(async () => { await lab?.destroy(); });

  it('HTTP/1.1 client: each upstream framing arrives intact, connection kept', async () => {
    const r = await raw(get('/cl/5') + get('/chunked/7') + get('/204') + get('/304') + get('/any', '', '1.1', 'HEAD') + get('/cl/3'));
    expect(r.closed).toBe(false);
    const rs = responses(r.reply);
    expect(rs.map((x) => x.head.split('\r\n')[0])).toEqual([
      'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 204 No Content', 'HTTP/1.1 304 Not Modified', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK',
    ]);
    expect(rs.map((x) => x.body)).toEqual(['xxxxx', 'xxxxxxx', '', '', '', 'xxx']);
    // Upstream chunked stays chunked for a 1.1 client; HEAD keeps the length it announced.
    expect(rs[1]!.head).toMatch(/\r\ntransfer-encoding: chunked/i);
    expect(rs[4]!.head).toMatch(/\r\ncontent-length: 1234/);
    for (const x of rs) expect(x.head).toMatch(/\r\nvia: 1\.1 egress-router/i);
  });

  it('a close-delimited upstream body reaches a 1.1 client chunked, on a connection kept open', async () => {
    const r = await raw(get('/close/6') + get('/cl/2'));
    const rs = responses(r.reply);
    expect(rs.map((x) => x.body)).toEqual(['xxxxxx', 'xx']);
    expect(rs[0]!.head).toMatch(/transfer-encoding: chunked/i);
    expect(r.closed).toBe(false);
  });

  it('HTTP/1.0 client: no chunked framing, the body ends with the connection', async () => {
    const r = await raw(get('/chunked/9', '', '1.0'));
    expect(r.closed).toBe(true);
    const [x] = responses(r.reply);
    expect(x!.head).not.toMatch(/transfer-encoding/i);
    expect(x!.head).toMatch(/\r\nconnection: close/i);
    expect(x!.body).toBe('xxxxxxxxx');
  });

  it('HTTP/1.0 keep-alive with a length is kept; Connection: close is honoured', async () => {
    const ka = await raw(get('/cl/4', 'Connection: keep-alive\r\n', '1.0') + get('/cl/1', 'Connection: keep-alive\r\n', '1.0'));
    expect(ka.closed).toBe(false);
    expect(responses(ka.reply).map((x) => x.body)).toEqual(['xxxx', 'x']);
    const close = await raw(get('/cl/4', 'Connection: close\r\n') + get('/cl/1'));
    expect(close.closed).toBe(true);
    // The request after "close" is not answered.
    expect(responses(close.reply).map((x) => x.body)).toEqual(['xxxx']);
  });

  it('refuses requests whose end is ambiguous, and closes', async () => {
    const cases: Array<[string, string]> = [
      [`POST http://${UP}/cl/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, '400'],
      [`POST http://${UP}/cl/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, '400'],
      [`GET http://${UP}/cl/1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n`, '400'],
      [`GET http://${UP}/cl/1 HTTP/1.1\nHost: a\n\n`, '400'],
      [`POST http://${UP}/cl/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n`, '501'],
      [`GET http://${UP}/cl/1 HTTP/1.1\r\nHost : a\r\n\r\n`, '400'],
    ];
    for (const [req, status] of cases) {
      const r = await raw(req);
      expect(r.reply.split('\r\n')[0], JSON.stringify(req)).toBe(`HTTP/1.1 ${status} ${status === '400' ? 'Bad Request' : 'Not Implemented'}`);
      expect(r.closed).toBe(true);
    }
  });

  it('a chunked request body is re-framed upstream; the next pipelined request still follows', async () => {
    // Extension and trailer included; the upstream reports the body it decoded.
    const body = '3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n';
    const r = await raw(`POST http://${UP}/x HTTP/1.1\r\nHost: ${UP}\r\nTransfer-Encoding: chunked\r\n\r\n${body}` + get('/cl/3'));
    const rs = responses(r.reply);
    expect(rs[0]!.head).toMatch(/\r\nx-got: abcde\r\n/);
    expect(rs.map((x) => x.body)).toEqual(['', 'xxx']);
    expect(r.closed).toBe(false);
  });

  it('Expect: 100-continue: answered once the request goes upstream, never for a refused one', async () => {
    const curl = (url: string) => lab.exec('client', ['curl', '-sS', '-v', '-m', '5', '-x', `http://${PROXY}`, '-H', 'Expect: 100-continue', '-d', 'hello', url], { timeoutMs: 10_000 });
    const ok = await curl(`http://${UP}/x`);
    expect(ok.stderr).toMatch(/< HTTP\/1\.1 100 Continue/);
    expect(ok.stderr).toMatch(/< x-got: hello/);
    const denied = await curl('http://203.0.113.11/x');
    expect(denied.stderr).toMatch(/< HTTP\/1\.1 403 /);
    expect(denied.stderr).not.toMatch(/100 Continue/);
    // A body sent with the head needs no interim answer; it arrives whole, and the next request follows.
    const r = await raw(`POST http://${UP}/x HTTP/1.1\r\nHost: ${UP}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello` + get('/cl/1'));
    const rs = responses(r.reply);
    expect(rs[0]!.head).toMatch(/\r\nx-got: hello\r\n/);
    expect(rs.map((x) => x.body)).toEqual(['', 'x']);
  });

  it('logs refused requests with their status and reason', async () => {
    await raw(`GET http://${UP}/cl/1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n`);
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 40 && !line; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      line = proxy.output().split('\n').filter((l) => l.includes('obsolete line folding')).map((l) => JSON.parse(l) as Record<string, unknown>)[0];
    }
    expect(line).toMatchObject({ msg: 'request', decision: 'error', status: 400, reason: 'obsolete line folding', client: ADDR.client });
  });

  it('logs each pipelined request once', async () => {
    const lines = proxy.output().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l) as { target: string });
    expect(lines.filter((l) => l.target === `${UP}/304`)).toHaveLength(1);
  });
});
