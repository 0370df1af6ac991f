// Clients for the operations tests (test/e2e/ops-*.test.ts). One JSON line
// of result on stdout; every mode is bounded in time (hard exit after HARD ms).
//   hold HOST:PORT EVERYMS FORMS [TARGET]   connect (through an HTTP proxy's CONNECT to
//       TARGET when given), read the echo server's greeting, send "ping N" every EVERYMS
//       for FORMS ms; report whether it stayed open and everything came back
//   loop tcp HOST:PORT FORMS                new connections one after another for FORMS ms,
//       each must get the server's "... sees ..." line
//   loop http PROXY FORMS URL               a GET through the proxy per new connection,
//       each must answer 200
import net from 'node:net';

const HARD = 40_000;
setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, HARD).unref();
const [mode, ...args] = process.argv.slice(2);
const split = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i), Number(s.slice(i + 1))]; };
const out = (o) => { process.stdout.write(`${JSON.stringify(o)}\n`); process.exit(0); };

/** A socket to host:port, through CONNECT when target is given; cb(socket, greetingSoFar). */
function open(addr, target, cb, fail) {
  const [h, p] = split(addr);
  const s = net.connect(p, h);
  s.on('error', (e) => fail(e.code ?? e.message));
  if (!target) return s.once('connect', () => cb(s, ''));
  s.once('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  let head = '';
  const onData = (d) => {
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    s.off('data', onData);
    if (!head.startsWith('HTTP/1.1 200')) return fail(`CONNECT ${head.slice(9, 12)}`);
    cb(s, head.slice(end + 4));
  };
  s.on('data', onData);
}

if (mode === 'hold') {
  const [addr, every, forMs, target] = [args[0], Number(args[1]), Number(args[2]), args[3]];
  open(addr, target, (s, got0) => {
    let got = got0, sent = 0, closed = false;
    s.on('data', (d) => (got += d));
    s.on('close', () => (closed = true));
    const t = setInterval(() => { if (!closed) s.write(`ping ${sent++}\n`); }, every);
    setTimeout(() => {
      clearInterval(t);
      // The last ping's echo may still be on its way.
      setTimeout(() => {
        out({ openAtEnd: !closed, sent, echoed: (got.match(/^ping \d+$/gm) ?? []).length, greeting: got.split('\n')[0] });
      }, 300);
    }, forMs);
  }, (error) => out({ error }));
} else if (mode === 'loop') {
  const [kind, addr, forMs, url] = [args[0], args[1], Number(args[2]), args[3]];
  const end = Date.now() + forMs;
  let ok = 0, failed = 0;
  const errors = [];
  const once = () => new Promise((resolve) => {
    let buf = '';
    const done = (good, why) => { if (good) ok++; else { failed++; if (errors.length < 5) errors.push(why); } s.destroy(); resolve(); };
    const [h, p] = split(addr);
    const s = net.connect(p, h);
    const timer = setTimeout(() => done(false, 'timeout'), 3000);
    s.on('error', (e) => { clearTimeout(timer); done(false, e.code ?? e.message); });
    if (kind === 'http') s.once('connect', () => s.write(`GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => (buf += d));
    s.on('end', () => {
      clearTimeout(timer);
      if (kind === 'http') done(buf.startsWith('HTTP/1.1 200'), buf.split('\r\n')[0] || 'empty');
      else done(buf.includes(' sees '), buf || 'empty');
    });
  });
  (async () => { while (Date.now() < end) await once(); out({ ok, failed, errors }); })();
} else {
  console.error(`unknown mode '${mode}'`);
  process.exit(2);
}
