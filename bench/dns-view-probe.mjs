// Paired latency probe for bench/dns-view.mjs: one query at a time, taking
// the targets in turn (round robin), so every target is measured under the
// same moment-to-moment noise of a shared machine; rounds paced at RATE/s.
//   node dns-view-probe.mjs RATE SECS SUFFIX PORT[,PORT...]
// Prints {"<port>": {p50us, p99us, n, lost}, ...}.
import dgram from 'node:dgram';

const [rate, secs, suffix, portList] = process.argv.slice(2);
const ports = portList.split(',').map(Number);
const sock = dgram.createSocket('udp4');
await new Promise((r) => sock.bind(0, '127.0.0.1', r));

function encode(id, name) {
  const labels = name.split('.');
  const q = Buffer.alloc(12 + labels.reduce((n, l) => n + l.length + 1, 0) + 1 + 4);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2); // RD
  q.writeUInt16BE(1, 4);
  let o = 12;
  for (const l of labels) { q[o++] = l.length; o += q.write(l, o, 'latin1'); }
  q[o++] = 0;
  q.writeUInt16BE(1, o); // A
  q.writeUInt16BE(1, o + 2); // IN
  return q;
}

let waiting;
sock.on('message', (m) => { if (waiting && m.readUInt16BE(0) === waiting.id) waiting.done(true); });
const ask = (port, msg, id) => new Promise((resolve) => {
  const t = setTimeout(() => { waiting = undefined; resolve(false); }, 1000);
  waiting = { id, done: (ok) => { clearTimeout(t); waiting = undefined; resolve(ok); } };
  sock.send(msg, port, '127.0.0.1');
});

const lat = Object.fromEntries(ports.map((p) => [p, []]));
const lost = Object.fromEntries(ports.map((p) => [p, 0]));
const end = Date.now() + Number(secs) * 1000;
const gap = 1000 / Number(rate);
let id = 1, k = 0;
for (let next = Date.now(); Date.now() < end; next += gap) {
  const name = `n${k++ % 256}.${suffix}`;
  for (const p of ports) {
    id = (id + 1) & 0xffff;
    const msg = encode(id, name);
    const t0 = process.hrtime.bigint();
    if (await ask(p, msg, id)) lat[p].push(Number(process.hrtime.bigint() - t0) / 1000); else lost[p]++;
  }
  const wait = next + gap - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
const q = (v, f) => v[Math.min(v.length - 1, Math.floor(f * v.length))];
const out = {};
for (const p of ports) { const v = lat[p].sort((a, b) => a - b); out[p] = { p50us: q(v, 0.5), p99us: q(v, 0.99), n: v.length, lost: lost[p] }; }
console.log(JSON.stringify(out));
sock.close();
