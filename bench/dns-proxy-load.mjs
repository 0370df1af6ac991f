// Load generator and servers for bench/dns-proxy.sh. Every loop is bounded
// by a duration or a count. Prints one JSON line with the result.
//   serve IP OFFSETS              per offset o: sink :5001+o, echo :5002+o, one-byte-and-close :5003+o
//   tput HOST PORT STREAMS SECS   bytes/s pushed through STREAMS connections
//   cps HOST PORT CONC SECS       connections/s (connect, read 1 byte, close) and failed connections
//   lat HOST PORT COUNT           ping-pong RTTs on one connection (p50, p99, µs)
//   idle HOST PORT N              hold N open connections until stdin closes
import net from 'node:net';

const [mode, ...a] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (mode === 'serve') {
  const ip = a[0];
  const opts = { noDelay: true };
  const offsets = a[1].split(',').map(Number);
  let pending = offsets.length * 3;
  const ready = () => { if (--pending === 0) out({ ready: true }); };
  for (const o of offsets) {
    net.createServer(opts, (c) => { c.on('error', () => {}); c.resume(); }).listen(5001 + o, ip, ready);
    net.createServer(opts, (c) => { c.on('error', () => {}); c.pipe(c); }).listen(5002 + o, ip, ready);
    net.createServer(opts, (c) => { c.on('error', () => {}); c.end('x'); }).listen(5003 + o, ip, ready);
  }
} else if (mode === 'tput') {
  const [host, port, streams, secs] = [a[0], Number(a[1]), Number(a[2]), Number(a[3])];
  const chunk = Buffer.alloc(256 << 10, 1);
  const socks = [];
  let stop = false;
  await Promise.all(Array.from({ length: streams }, () => new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true }, () => resolve());
    s.on('error', reject);
    socks.push(s);
  })));
  const t0 = process.hrtime.bigint();
  for (const s of socks) {
    const pump = () => { while (!stop && s.write(chunk)); };
    s.on('drain', pump);
    pump();
  }
  await new Promise((r) => setTimeout(r, secs * 1000));
  stop = true;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  // Bytes handed to the kernel minus what is still queued in user space.
  const bytes = socks.reduce((n, s) => n + s.bytesWritten - s.writableLength, 0);
  socks.forEach((s) => s.destroy());
  out({ bytesPerSec: bytes / dt });
} else if (mode === 'cps') {
  const [host, port, conc, secs] = [a[0], Number(a[1]), Number(a[2]), Number(a[3])];
  const end = Date.now() + secs * 1000;
  let done = 0, failed = 0;
  // A connection closed or refused before its byte arrived counts as failed.
  const one = () => new Promise((resolve) => {
    const s = net.connect({ host, port });
    let got = false;
    s.once('data', () => { got = true; done++; s.destroy(); resolve(); });
    s.once('error', () => {});
    s.once('close', () => { if (!got) { failed++; resolve(); } });
  });
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, async () => { while (Date.now() < end) await one(); }));
  out({ connPerSec: done / ((Date.now() - t0) / 1000), failed });
} else if (mode === 'lat') {
  const [host, port, count] = [a[0], Number(a[1]), Number(a[2])];
  const s = await new Promise((resolve, reject) => { const c = net.connect({ host, port, noDelay: true }, () => resolve(c)); c.on('error', reject); });
  const rtts = [];
  for (let i = 0; i < count; i++) {
    const t = process.hrtime.bigint();
    await new Promise((r) => { s.once('data', r); s.write('p'); });
    rtts.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  s.destroy();
  rtts.sort((x, y) => x - y);
  out({ p50us: rtts[Math.floor(count * 0.5)], p99us: rtts[Math.floor(count * 0.99)] });
} else if (mode === 'idle') {
  const [host, port, n] = [a[0], Number(a[1]), Number(a[2])];
  const socks = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, resolve);
      s.on('error', reject);
      socks.push(s);
    })));
  }
  out({ open: socks.length });
  process.stdin.resume();
  process.stdin.on('end', () => { socks.forEach((s) => s.destroy()); process.exit(0); });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
