// Bulk and limit helpers for the HTTP proxy's end-to-end tests
// (test/e2e/http-proxy-limits.test.ts). Every transfer is hashed (sha256) at
// both ends; servers print one JSON line per transfer on stdout, clients print
// one JSON result. Every mode is bounded (a hard exit after HARD ms).
//
//   serve HTTP_IP:PORT[,...] TCP_IP:PORT   (internet namespace)
//     HTTP GET /bytes/N    N random bytes with Content-Length
//     HTTP GET /chunked/N  N random bytes in uneven chunks, no Content-Length (chunked)
//     HTTP POST any        reads the body, answers "<bytes> <sha256>\n" and closes the
//                          connection (a proxy's next upload needs a fresh one)
//     TCP                  reads a line "<N>\n", sends N random bytes while hashing what
//                          it receives; when the client has shut down writing, sends
//                          "<bytes> <sha256>\n" of what it received and closes
//   tunnel PROXY TARGET DOWN UP         CONNECT to TARGET (the TCP server), ask for DOWN
//                                       bytes while sending UP bytes, both ways at once
//   hold PROXY SPEC...                  open connections and keep them: connect:HOST:PORT
//                                       (a CONNECT tunnel) or get:URL (one keep-alive GET);
//                                       prints "held <status>..." then waits for SIGTERM
//   idle PROXY TARGET MAXMS             CONNECT to an echo server, read its greeting, send
//                                       nothing; report when the proxy closes the tunnel
//   active PROXY TARGET EVERYMS FORMS   CONNECT to an echo server, send a line every EVERYMS
//                                       for FORMS; report whether it is still open
import net from 'node:net';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

const HARD = 25_000;
setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, HARD).unref();
const [mode, ...args] = process.argv.slice(2);
const split = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i), Number(s.slice(i + 1))]; };
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** Write n random bytes to a stream in chunks of chunk() bytes, honouring backpressure. */
function sendRandom(stream, n, chunk, done) {
  const h = createHash('sha256');
  let left = n;
  const pump = () => {
    while (left > 0) {
      const b = randomBytes(Math.min(left, chunk()));
      left -= b.length;
      h.update(b);
      if (!stream.write(b)) return stream.once('drain', pump);
    }
    done(h.digest('hex'));
  };
  pump();
}

/** Open a CONNECT tunnel; cb(socket, status, rest) once the proxy's answer head is in. */
function connectVia(proxy, target, cb) {
  const [ph, pp] = split(proxy);
  const s = net.connect({ host: ph, port: pp, allowHalfOpen: true });
  s.on('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  let head = Buffer.alloc(0);
  const onData = (d) => {
    head = Buffer.concat([head, d]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    s.off('data', onData);
    cb(s, Number(/^HTTP\/1\.1 (\d+)/.exec(head.toString('latin1'))?.[1] ?? 0), head.subarray(end + 4));
  };
  s.on('data', onData);
  return s;
}

if (mode === 'serve') {
  const [tip, tport] = split(args[1]);
  let pending = 1;
  const ready = () => { if (--pending === 0) process.stdout.write('ready\n'); };
  const app = (req, res) => {
    const m = /^\/(bytes|chunked)\/(\d+)$/.exec(req.url);
    if (req.method === 'POST') {
      const h = createHash('sha256');
      let bytes = 0;
      req.on('data', (d) => { bytes += d.length; h.update(d); });
      req.on('end', () => {
        const sha = h.digest('hex');
        out({ post: req.url, bytes, sha, te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null, expect: req.headers.expect ?? null });
        res.setHeader('connection', 'close');
        res.end(`${bytes} ${sha}\n`);
      });
    } else if (m) {
      req.resume();
      const n = Number(m[2]);
      if (m[1] === 'bytes') res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      else res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const size = m[1] === 'bytes' ? () => 64 * 1024 : () => 1 + Math.floor(Math.random() * 100_000);
      sendRandom(res, n, size, (sha) => { res.end(); out({ get: req.url, bytes: n, sha, chunked: res.chunkedEncoding === true }); });
    } else { res.writeHead(404); res.end('not found\n'); }
  };
  for (const a of args[0].split(',')) { pending++; const [ip, port] = split(a); http.createServer(app).listen(port, ip, ready); }
  net.createServer({ allowHalfOpen: true }, (c) => {
    c.on('error', () => {});
    const h = createHash('sha256');
    let line = '', want = -1, got = 0, sentSha = null, gotSha = null;
    const finish = () => {
      if (sentSha === null || gotSha === null) return;
      out({ tcp: true, sent: want, sentSha, got, gotSha });
      c.end(`${got} ${gotSha}\n`);
    };
    c.on('data', (d) => {
      if (want < 0) {
        line += d.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl < 0) return;
        want = Number(line.slice(0, nl));
        d = Buffer.from(line.slice(nl + 1), 'latin1');
        sendRandom(c, want, () => 64 * 1024, (sha) => { sentSha = sha; finish(); });
      }
      got += d.length;
      h.update(d);
    });
    c.on('end', () => { gotSha = h.digest('hex'); finish(); });
  }).listen(tport, tip, ready);
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'tunnel') {
  const [proxy, target, down, up] = [args[0], args[1], Number(args[2]), Number(args[3])];
  const t0 = Date.now();
  connectVia(proxy, target, (s, status, rest) => {
    if (status !== 200) { out({ status }); return process.exit(0); }
    const h = createHash('sha256');
    let downBytes = 0, tail = Buffer.alloc(0), upSha = null;
    const take = (d) => {
      const n = Math.min(d.length, down - downBytes);
      h.update(d.subarray(0, n));
      downBytes += n;
      if (n < d.length) tail = Buffer.concat([tail, d.subarray(n)]);
    };
    take(rest);
    s.on('data', take);
    s.on('close', () => out({ status, down: { bytes: downBytes, sha: h.digest('hex') }, up: { bytes: up, sha: upSha }, report: tail.toString(), ms: Date.now() - t0 }));
    s.write(`${down}\n`);
    sendRandom(s, up, () => 64 * 1024, (sha) => { upSha = sha; s.end(); });
  }).on('error', (e) => { out({ error: e.code }); process.exit(0); });
} else if (mode === 'hold') {
  const [proxy, ...specs] = args;
  const socks = [], statuses = [];
  for (const spec of specs) {
    if (spec.startsWith('connect:')) {
      socks.push(connectVia(proxy, spec.slice(8), (_s, status) => { statuses.push(status); held(); }));
    } else {
      const url = new URL(spec.slice(4));
      const [ph, pp] = split(proxy);
      const s = net.connect(pp, ph, () => s.write(`GET ${url.href} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`));
      let got = '';
      const onData = (d) => {
        got += d.toString('latin1');
        const end = got.indexOf('\r\n\r\n');
        const len = Number(/content-length: *(\d+)/i.exec(got)?.[1] ?? -1);
        if (end < 0 || len < 0 || got.length < end + 4 + len) return;
        s.off('data', onData);
        statuses.push(Number(got.slice(9, 12)));
        held();
      };
      s.on('data', onData);
      socks.push(s);
    }
  }
  let closed = 0;
  for (const s of socks) {
    s.on('error', () => {});
    s.on('close', () => { if (++closed === socks.length && released) { console.log('released'); process.exit(0); } });
  }
  function held() { if (statuses.length === specs.length) console.log(`held ${statuses.join(' ')}`); }
  let released = false;
  process.on('SIGTERM', () => {
    released = true;
    if (closed === socks.length) process.exit(0);
    for (const s of socks) s.destroy();
  });
} else if (mode === 'idle' || mode === 'active') {
  const [proxy, target, a, b] = [args[0], args[1], Number(args[2]), Number(args[3])];
  connectVia(proxy, target, (s, status, rest) => {
    let got = rest.toString();
    const start = Date.now();
    let closed = null, sent = 0, timer;
    s.on('data', (d) => (got += d));
    // The proxy closing the tunnel: 'end' (we are half-open), or 'close' on a reset.
    const onEnd = () => {
      if (closed !== null) return;
      closed = Date.now() - start;
      clearInterval(timer);
      if (mode === 'idle') { out({ status, closedAfterMs: closed, got }); process.exit(0); }
    };
    s.on('end', onEnd);
    s.on('close', onEnd);
    if (mode === 'idle') {
      setTimeout(() => { out({ status, closedAfterMs: null, got }); process.exit(0); }, a);
    } else {
      timer = setInterval(() => { if (closed === null) s.write(`ping ${sent++}\n`); }, a);
      setTimeout(() => {
        clearInterval(timer);
        out({ status, openAtEnd: closed === null, closedAfterMs: closed, sent, echoed: (got.match(/^ping \d+$/gm) ?? []).length, got });
        s.destroy();
        process.exit(0);
      }, b);
    }
  }).on('error', (e) => { out({ error: e.code }); process.exit(0); });
} else {
  console.error(`unknown mode '${mode}'`);
  process.exit(2);
}
