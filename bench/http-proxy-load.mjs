// Load helpers for bench/http-proxy.sh (bounded: fixed byte counts, fixed
// connection counts, hard exit timers).
//   bulk  PROXY|- TARGET BYTES STREAMS   download BYTES per stream through a CONNECT tunnel
//                                        (PROXY "-" = direct); prints {mbps, ms}
//   idle  PROXY|- TARGET N HOLDMS        open N tunnels (or direct connections), print "ready",
//                                        hold them HOLDMS, then exit
//   source LISTEN                        server: sends bytes forever to each client until it closes
//   sink LISTEN                          server: accepts and holds connections, reads and drops
import net from 'node:net';

const [mode, proxy, target, a3, a4] = process.argv.slice(2);
const hostPort = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i), Number(s.slice(i + 1))]; };

function open(onReady) {
  const [h, p] = hostPort(proxy === '-' ? target : proxy);
  const s = net.connect({ host: h, port: p, noDelay: true });
  s.on('error', (e) => { console.error(`${mode}: ${e.code}`); process.exit(2); });
  if (proxy === '-') { s.once('connect', () => onReady(s, Buffer.alloc(0))); return s; }
  s.once('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  let head = Buffer.alloc(0);
  const onData = (d) => {
    head = Buffer.concat([head, d]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    s.off('data', onData);
    if (!head.subarray(0, 12).toString().includes(' 200')) { console.error(`${mode}: ${head.toString().split('\r\n')[0]}`); process.exit(2); }
    onReady(s, head.subarray(end + 4));
  };
  s.on('data', onData);
  return s;
}

if (mode === 'source' || mode === 'sink') {
  const [h, p] = hostPort(proxy);
  const chunk = Buffer.alloc(256 * 1024, 120);
  net.createServer({ noDelay: true }, (c) => {
    c.on('error', () => {});
    if (mode === 'sink') { c.resume(); return; }
    let alive = true;
    c.on('close', () => { alive = false; });
    const pump = () => { while (alive && c.write(chunk)); };
    c.on('drain', pump);
    pump();
  }).listen({ host: h, port: p, backlog: 4096 }, () => console.log('ready'));
} else if (mode === 'bulk') {
  // Reads land in one reusable 1 MiB buffer (onread): the client must not be
  // the bottleneck, and a fresh 64 KiB allocation per read made it one.
  const bytes = Number(a3), streams = Number(a4 ?? 1);
  setTimeout(() => { console.error('bulk: hard timeout'); process.exit(3); }, 120_000).unref();
  const t0 = process.hrtime.bigint();
  const buf = Buffer.allocUnsafe(1 << 20);
  let done = 0;
  for (let i = 0; i < streams; i++) {
    const [h, p] = hostPort(proxy === '-' ? target : proxy);
    let head = proxy === '-' ? null : '';
    let got = 0;
    const s = net.connect({ host: h, port: p, noDelay: true, onread: { buffer: buf, callback(n) {
      let rest = n;
      if (head !== null) {
        head += buf.toString('latin1', 0, n);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return true;
        if (!head.slice(0, 12).includes(' 200')) { console.error(`bulk: ${head.split('\r\n')[0]}`); process.exit(2); }
        rest = head.length - end - 4;
        head = null;
      }
      got += rest;
      if (got >= bytes) {
        s.destroy();
        if (++done === streams) {
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          console.log(JSON.stringify({ mbps: Math.round((bytes * streams * 8) / ms / 1000), ms: Math.round(ms) }));
          process.exit(0);
        }
        return false;
      }
      return true;
    } } });
    s.on('error', (e) => { console.error(`bulk: ${e.code}`); process.exit(2); });
    if (proxy !== '-') s.once('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  }
} else if (mode === 'idle') {
  const n = Number(a3);
  setTimeout(() => process.exit(0), Number(a4)).unref();
  const held = [];
  let ready = 0;
  // At most 200 handshakes in flight: a burst of thousands would overflow accept queues.
  let next = 0;
  const more = () => {
    while (next < n && next - ready < 200) {
      next++;
      held.push(open(() => { if (++ready === n) console.log('ready'); else more(); }));
    }
  };
  more();
  setInterval(() => {}, 1000);
}
