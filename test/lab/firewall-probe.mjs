// Client probes for the firewall's end-to-end tests, run in a lab namespace.
// Each prints what the client saw, so a test can tell a refusal from a timeout.
//   tcp HOST PORT [MS]   connect, read the server's line   -> {"ok":true,"line":...} | {"ok":false,"err":"ECONNREFUSED"}
//   udp HOST PORT [MS]   connected UDP socket (so ICMP errors surface), one datagram, read the answer
//   watch HOST PORT SECS  like hold, but only listens: a "tick" server talks, the client never sends
//   tickserve HOST PORT   (server side) each connection: "<ip>:<port> ticks\n", then "tick\n" every 100 ms for 30 s
//   dns SERVER NAME [MS]  A lookup at SERVER (UDP; c-ares retries over TCP when the answer is truncated)
//   hold HOST PORT SECS  connect to an echo server, then a round trip every 100 ms for SECS seconds;
//                        prints "banner <line>", "echo <ms since start>" per round trip, "err <code>", "end"
// Every probe is bounded: MS (default 5000) or SECS; a missing answer reports "TIMEOUT".
import net from 'node:net';
import dgram from 'node:dgram';
import dns from 'node:dns/promises';

const [mode, host, portArg, limitArg] = process.argv.slice(2);
const port = Number(portArg);
const t0 = Date.now();
const done = (o) => { process.stdout.write(JSON.stringify({ ...o, ms: Date.now() - t0 }) + '\n'); process.exit(0); };

if (mode === 'tcp') {
  const ms = Number(limitArg ?? 5000);
  const s = net.connect({ host, port });
  let line = '';
  setTimeout(() => done({ ok: false, err: 'TIMEOUT', line }), ms);
  s.on('data', (d) => { line += d; if (line.includes('\n')) done({ ok: true, line: line.trim() }); });
  s.on('error', (e) => done({ ok: false, err: e.code ?? e.message }));
  s.on('end', () => done(line ? { ok: true, line: line.trim() } : { ok: false, err: 'EOF' }));
} else if (mode === 'udp') {
  const ms = Number(limitArg ?? 5000);
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  setTimeout(() => done({ ok: false, err: 'TIMEOUT' }), ms);
  s.on('message', (m) => done({ ok: true, line: m.toString().trim() }));
  s.on('error', (e) => done({ ok: false, err: e.code ?? e.message }));
  // Connected: the kernel reports ICMP errors (refused, admin prohibited) to this socket.
  s.connect(port, host, () => s.send('probe\n'));
} else if (mode === 'dns') {
  const ms = Number(limitArg ?? 5000);
  setTimeout(() => done({ ok: false, err: 'TIMEOUT' }), ms);
  const r = new dns.Resolver({ timeout: 1000, tries: 2 });
  r.setServers([host]);
  // portArg is the name here.
  r.resolve4(portArg).then((a) => done({ ok: true, line: a.join(',') }), (e) => done({ ok: false, err: e.code ?? e.message }));
} else if (mode === 'tickserve') {
  net.createServer((c) => {
    c.on('error', () => {});
    c.write(`${host}:${port} ticks\n`);
    const t = setInterval(() => c.write('tick\n'), 100);
    const stop = () => clearInterval(t);
    setTimeout(() => { stop(); c.destroy(); }, 30_000);
    c.on('close', stop);
  }).listen(port, host, () => process.stdout.write('ready\n'));
} else if (mode === 'watch') {
  const secs = Number(limitArg ?? 5);
  const out = (l) => process.stdout.write(`${l}\n`);
  const s = net.connect({ host, port });
  let buf = '';
  let bannered = false;
  const finish = () => { out('end'); process.exit(0); };
  setTimeout(() => { s.destroy(); finish(); }, secs * 1000);
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!bannered) { bannered = true; out(`banner ${l}`); } else out(`echo ${Date.now() - t0}`);
    }
  });
  s.on('error', (e) => { out(`err ${e.code ?? e.message}`); finish(); });
  s.on('close', () => { out('err CLOSED'); finish(); });
} else if (mode === 'hold') {
  const secs = Number(limitArg ?? 5);
  const out = (l) => process.stdout.write(`${l}\n`);
  const s = net.connect({ host, port, noDelay: true });
  let buf = '';
  let bannered = false;
  let waiting = false;
  const finish = () => { out('end'); process.exit(0); };
  setTimeout(() => { s.destroy(); finish(); }, secs * 1000);
  s.on('data', (d) => {
    buf += d;
    if (!bannered) {
      const i = buf.indexOf('\n');
      if (i < 0) return;
      out(`banner ${buf.slice(0, i)}`);
      buf = buf.slice(i + 1);
      bannered = true;
    }
    if (waiting && buf.includes('ping\n')) { buf = ''; waiting = false; out(`echo ${Date.now() - t0}`); }
  });
  setInterval(() => { if (bannered && !waiting && !s.destroyed) { waiting = true; s.write('ping\n'); } }, 100);
  s.on('error', (e) => { out(`err ${e.code ?? e.message}`); finish(); });
  s.on('close', () => { out('err CLOSED'); finish(); });
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
