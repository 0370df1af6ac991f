// Both ends of a bulk transfer through a relay, in a process of their own so
// that the relay's process holds nothing but the relay (its RSS is then what
// the relay buffers: test/unit/fastpath.test.ts).
//   node fastpath-peer.mjs [MiB]
// Prints {"port":N} (the upstream to relay to), then reads the relay's port on
// stdin, sends MiB each way through it to slow readers (paused 300 ms first,
// then pausing briefly every 4 MiB) and prints {"down":..,"up":..,"want":..}
// as "<bytes>:<sha256>" (want: what was sent each way).
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

const MIB = Number(process.argv[2] ?? 64);
const blocks = [0, 1, 2, 3].map(() => randomBytes(1 << 20));
const seq = (i) => blocks[(i * 7 + (i >> 3)) % 4];
const want = createHash('sha256');
for (let i = 0; i < MIB; i++) want.update(seq(i));

const send = (s) => {
  let i = 0;
  const go = () => { while (i < MIB) if (!s.write(seq(i++))) return void s.once('drain', go); s.end(); };
  go();
};
const slowRead = (s) => new Promise((resolve) => {
  const h = createHash('sha256');
  let n = 0, mark = 0;
  s.pause();
  setTimeout(() => s.resume(), 300);
  s.on('data', (d) => {
    h.update(d);
    n += d.length;
    if (n - mark >= 4 << 20) { mark = n; s.pause(); setTimeout(() => s.resume(), 5); }
  });
  s.on('error', (e) => resolve(`error ${e.code}`));
  s.once('end', () => resolve(`${n}:${h.digest('hex')}`));
});

let up;
const srv = net.createServer({ allowHalfOpen: true }, (s) => { up = slowRead(s); send(s); });
srv.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: srv.address().port })));
// Bounded: the whole exchange within 60 s.
setTimeout(() => { console.log(JSON.stringify({ error: 'timed out' })); process.exit(1); }, 60_000).unref();
for await (const line of createInterface({ input: process.stdin })) {
  const c = net.connect({ port: Number(line), host: '127.0.0.1', allowHalfOpen: true });
  const down = slowRead(c);
  send(c);
  const d = await down;
  while (!up) await new Promise((r) => setTimeout(r, 5));
  console.log(JSON.stringify({ down: d, up: await up, want: `${MIB << 20}:${want.digest('hex')}` }));
  process.exit(0);
}
