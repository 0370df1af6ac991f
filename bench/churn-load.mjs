// Load generator, servers and Node floors for bench/churn.mjs. Bounded by
// duration or count. Prints one JSON line with the result.
//   echo LISTEN...                       server: echoes what it reads, ends when the client does
//   churn HOST:PORT CONC SECS [TARGET]   CONC loops of connect / (CONNECT TARGET, 200) / 100 B out /
//                                        100 B back / close; prints {connPerSec, failed}
//   idle HOST:PORT N [TARGET]            hold N connections (tunnels with TARGET) until stdin closes
//   relay LISTEN TARGET                  floor: the least a Node TCP relay does (no retry, no stats, no timers)
//   connect LISTEN                       floor: the least a Node CONNECT proxy does (no policy, no log)
import net from 'node:net';

const [mode, ...a] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const hp = (s) => { const i = s.lastIndexOf(':'); return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }; };
const PAYLOAD = Buffer.alloc(100, 120);

/** One connection through host:port (a CONNECT tunnel to target when given); resolves true when the 100 B came back. */
function one(to, target) {
  return new Promise((resolve) => {
    const s = net.connect({ ...to, noDelay: true });
    let stage = target ? 0 : 1, got = 0, head = '';
    s.on('error', () => {});
    s.once('close', () => resolve(got >= 100));
    s.once('connect', () => s.write(target ? `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n` : PAYLOAD));
    s.on('data', (d) => {
      if (stage === 0) {
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!head.startsWith('HTTP/1.1 200')) return s.destroy();
        stage = 1;
        got = head.length - end - 4;
        s.write(PAYLOAD);
        return;
      }
      got += d.length;
      if (got >= 100) s.destroy();
    });
  });
}

if (mode === 'echo') {
  let left = a.length;
  for (const l of a) net.createServer({ noDelay: true }, (c) => { c.on('error', () => {}); c.pipe(c); }).listen({ ...hp(l), backlog: 4096 }, () => { if (--left === 0) out({ ready: true }); });
} else if (mode === 'churn') {
  const to = hp(a[0]), conc = Number(a[1]), secs = Number(a[2]), target = a[3];
  setTimeout(() => { console.error('churn: hard timeout'); process.exit(3); }, (secs + 30) * 1000).unref();
  const end = Date.now() + secs * 1000;
  let done = 0, failed = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (Date.now() < end) { if (await one(to, target)) done++; else failed++; }
  }));
  out({ connPerSec: done / ((Date.now() - t0) / 1000), done, failed });
} else if (mode === 'idle') {
  const to = hp(a[0]), n = Number(a[1]), target = a[2];
  setTimeout(() => process.exit(0), 120_000).unref();
  const socks = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => new Promise((resolve, reject) => {
      const s = net.connect(to);
      s.on('error', reject);
      socks.push(s);
      if (!target) return s.once('connect', resolve);
      s.once('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
      s.once('data', resolve);
    })));
  }
  out({ open: socks.length });
  process.stdin.resume();
  process.stdin.on('end', () => { socks.forEach((s) => s.destroy()); process.exit(0); });
} else if (mode === 'relay') {
  const t = hp(a[1]);
  net.createServer({ noDelay: true, allowHalfOpen: true }, (c) => {
    const u = net.connect({ ...t, noDelay: true, allowHalfOpen: true });
    c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
    c.pipe(u); u.pipe(c);
  }).listen({ ...hp(a[0]), backlog: 4096 }, () => out({ ready: true }));
} else if (mode === 'connect') {
  net.createServer({ noDelay: true, allowHalfOpen: true }, (c) => {
    c.on('error', () => {});
    c.once('data', (d) => {
      const line = d.toString('latin1', 0, d.indexOf(13));
      const u = net.connect({ ...hp(line.split(' ')[1]), noDelay: true, allowHalfOpen: true });
      u.on('error', () => c.destroy()); c.on('error', () => u.destroy());
      u.once('connect', () => { c.write('HTTP/1.1 200 Connection established\r\n\r\n'); c.pipe(u); u.pipe(c); });
    });
  }).listen({ ...hp(a[0]), backlog: 4096 }, () => out({ ready: true }));
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
