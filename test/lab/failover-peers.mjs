// Client and server programs of the failover lab (test/lab/failover.ts).
// Every mode is bounded in time (a hard exit) and prints JSON lines.
//
//   serve IP BANNER_PORT SINK_PORT SOURCE_PORT   (server side)
//     BANNER_PORT: "<ip>:<port> sees <client-ip>:<client-port>\n", then close
//     SINK_PORT:   reads until the client shuts down writing, then answers
//                  {"bytes":N,"sha256":H,"peer":"<client-ip>"} and closes
//     SOURCE_PORT: reads "<bytes> <bytes-per-s>\n", sends that many bytes of
//                  the shared pseudo-random sequence at that rate, closes
//   stream HOST PORT BYTES_PER_S MS  (client side) one long upload at a steady
//                  rate, hashed here and at the server: prints one JSON result
//   download HOST PORT BYTES_PER_S MS  (client side) one long download from
//                  SOURCE_PORT, checked against the sequence: one JSON result
//   loop HOST PORT EVERY_MS MS MAX   (client side) a new connection every
//                  EVERY_MS (at most MAX): one JSON line per attempt
import net from 'node:net';
import { createHash } from 'node:crypto';

const [mode, ...a] = process.argv.slice(2);
/** The shared deterministic byte sequence: a corrupted, lost or repeated segment changes its hash. */
function sequence() {
  let seed = 1;
  return (n) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; b.writeUInt32LE(seed, i); }
    return b;
  };
}
const hard = (ms) => setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, ms).unref();

if (mode === 'serve') {
  const [ip, banner, sink, source] = a;
  let pending = 3;
  const ready = () => { if (--pending === 0) console.log('ready'); };
  net.createServer((c) => {
    c.on('error', () => {});
    c.end(`${ip}:${banner} sees ${c.remoteAddress}:${c.remotePort}\n`);
  }).listen(Number(banner), ip, ready);
  net.createServer((c) => {
    const h = createHash('sha256');
    let bytes = 0;
    c.on('data', (d) => { h.update(d); bytes += d.length; });
    c.on('end', () => c.end(JSON.stringify({ bytes, sha256: h.digest('hex'), peer: c.remoteAddress }) + '\n'));
    c.on('error', (e) => console.log(JSON.stringify({ sinkError: e.message, bytes, peer: c.remoteAddress })));
  }).listen(Number(sink), ip, ready);
  net.createServer((c) => {
    c.on('error', (e) => console.log(JSON.stringify({ sourceError: e.message, peer: c.remoteAddress })));
    let req = '';
    c.on('data', (d) => {
      req += d;
      if (!req.includes('\n')) return;
      c.removeAllListeners('data');
      const [total, rate] = req.trim().split(' ').map(Number);
      const next = sequence();
      const t0 = Date.now();
      let sent = 0;
      const tick = setInterval(() => {
        while (sent < total && sent < (rate * (Date.now() - t0)) / 1000 && c.writableLength < 65536) {
          const b = next(Math.min(16384, total - sent));
          sent += b.length;
          c.write(b);
        }
        if (sent >= total) { clearInterval(tick); c.end(); }
      }, 10);
      c.on('close', () => clearInterval(tick));
    });
  }).listen(Number(source), ip, ready);
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'stream') {
  const [host, port, rate, ms] = a.map((v, i) => (i === 0 ? v : Number(v)));
  hard(ms + 30_000);
  const h = createHash('sha256');
  const chunk = 16 * 1024;
  let sent = 0;
  const gen = sequence();
  const next = () => gen(chunk);
  const t0 = Date.now();
  let reply = '', maxStallMs = 0, lastDrain = t0;
  const s = net.connect(port, host);
  s.setNoDelay(true);
  s.on('data', (d) => (reply += d));
  s.on('error', (e) => { console.log(JSON.stringify({ ok: false, error: e.code ?? e.message, sent, ms: Date.now() - t0 })); process.exit(1); });
  s.on('end', () => {
    const r = JSON.parse(reply || '{}');
    const sha256 = h.digest('hex');
    const ok = r.bytes === sent && r.sha256 === sha256;
    console.log(JSON.stringify({ ok, sent, sha256, server: r, ms: Date.now() - t0, maxStallMs }));
    process.exit(ok ? 0 : 1);
  });
  s.on('connect', () => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - t0;
      if (elapsed >= ms) { clearInterval(tick); s.end(); return; }
      // Keep to the rate, but never queue more than a few chunks in user space.
      while (sent < (rate * elapsed) / 1000 && s.writableLength < 4 * chunk) {
        const b = next();
        h.update(b);
        sent += b.length;
        if (!s.write(b)) break;
      }
      if (s.writableLength === 0) lastDrain = Date.now();
      maxStallMs = Math.max(maxStallMs, Date.now() - lastDrain);
    }, 10);
  });
} else if (mode === 'download') {
  const [host, port, rate, ms] = a.map((v, i) => (i === 0 ? v : Number(v)));
  hard(ms + 30_000);
  const total = Math.floor((rate * ms) / 1000 / 4) * 4;
  const expected = createHash('sha256').update(sequence()(total)).digest('hex');
  const h = createHash('sha256');
  const t0 = Date.now();
  let bytes = 0, last = t0, maxGapMs = 0;
  const s = net.connect(port, host, () => s.write(`${total} ${rate}\n`));
  s.on('data', (d) => { h.update(d); bytes += d.length; const now = Date.now(); maxGapMs = Math.max(maxGapMs, now - last); last = now; });
  s.on('error', (e) => { console.log(JSON.stringify({ ok: false, error: e.code ?? e.message, bytes, total, ms: Date.now() - t0 })); process.exit(1); });
  s.on('end', () => {
    const ok = bytes === total && h.digest('hex') === expected;
    console.log(JSON.stringify({ ok, bytes, total, ms: Date.now() - t0, maxGapMs }));
    process.exit(ok ? 0 : 1);
  });
} else if (mode === 'loop') {
  const [host, port, every, ms, max] = a.map((v, i) => (i === 0 ? v : Number(v)));
  hard(ms + 10_000);
  const t0 = Date.now();
  let started = 0, done = 0;
  const attempt = () => {
    const t = Date.now();
    let out = '';
    // 5 s: a client's SYN is retransmitted after 1 s and 3 s.
    const s = net.connect({ host, port, timeout: 5000 });
    const finish = (ok, error) => {
      s.destroy();
      console.log(JSON.stringify({ t, ms: Date.now() - t, ok, line: out.trim(), error }));
      if (++done === started && (Date.now() - t0 >= ms || started >= max)) process.exit(0);
    };
    s.on('data', (d) => (out += d));
    s.on('end', () => finish(out.includes(' sees '), undefined));
    s.on('timeout', () => finish(false, 'timeout'));
    s.on('error', (e) => finish(false, e.code ?? e.message));
  };
  const tick = setInterval(() => {
    if (Date.now() - t0 >= ms || started >= max) { clearInterval(tick); if (done === started) process.exit(0); return; }
    started++;
    attempt();
  }, every);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
