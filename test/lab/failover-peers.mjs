// Client and server programs of the failover lab (test/lab/failover.ts).
// Every mode is bounded in time (a hard exit) and prints JSON lines.
//
//   serve IP BANNER_PORT SINK_PORT   (server side)
//     BANNER_PORT: "<ip>:<port> sees <client-ip>:<client-port>\n", then close
//     SINK_PORT:   reads until the client shuts down writing, then answers
//                  {"bytes":N,"sha256":H,"peer":"<client-ip>"} and closes
//   stream HOST PORT BYTES_PER_S MS  (client side) one long upload at a steady
//                  rate, hashed here and at the server: prints one JSON result
//   loop HOST PORT EVERY_MS MS MAX   (client side) a new connection every
//                  EVERY_MS (at most MAX): one JSON line per attempt
import net from 'node:net';
import { createHash } from 'node:crypto';

const [mode, ...a] = process.argv.slice(2);
const hard = (ms) => setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, ms).unref();

if (mode === 'serve') {
  const [ip, banner, sink] = a;
  let pending = 2;
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
  process.on('SIGTERM', () => process.exit(0));
} else if (mode === 'stream') {
  const [host, port, rate, ms] = a.map((v, i) => (i === 0 ? v : Number(v)));
  hard(ms + 30_000);
  const h = createHash('sha256');
  const chunk = 16 * 1024;
  let sent = 0, seed = 1;
  // Deterministic pseudo-random bytes: a corrupted or repeated segment changes the hash.
  const next = () => {
    const b = Buffer.allocUnsafe(chunk);
    for (let i = 0; i < chunk; i += 4) { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; b.writeUInt32LE(seed, i); }
    return b;
  };
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
