// Fast-path scenarios that need an unanswered SYN, run inside a namespace
// whose BLACKHOLE address drops SYNs (test/e2e/fastpath-race.test.ts).
//   node fastpath-run.mjs BLACKHOLE BLACKHOLE2
// Prints one JSON line per scenario: {scenario, events: [[name, ms, ...args]], ...}
// (ms from the client's connect), then {"done":true}. Bounded: 20 s in all.
import net from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { FastPath, REASONS } = await import(join(ROOT, 'dist/engines/fastpath/index.js'));
const [HOLE, HOLE2] = process.argv.slice(2);
setTimeout(() => { console.log(JSON.stringify({ error: 'timed out' })); process.exit(1); }, 20_000).unref();

const fp = new FastPath();
fp.sweepEvery(10);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fds = () => readdirSync('/proc/self/fd').length;
/** Sockets of this namespace in SYN-SENT (state 02 in /proc/net/tcp). */
const synSent = () => readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).filter((l) => l.trim().split(/\s+/)[3] === '02').length;

const up = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.end('won'); });
await new Promise((r) => up.listen(0, '127.0.0.1', r));
const UP = up.address().port;

/** One client through a relay listener whose handler is made by `make(ctx)`; resolves when closed() came. */
async function scenario(name, make, extra = async () => ({})) {
  const before = fds();
  const events = [];
  let t0 = 0;
  const at = () => Math.round(performance.now() - t0);
  let done;
  const closed = new Promise((r) => (done = r));
  const ctx = { fp, events, at };
  const h = make(ctx);
  const lid = fp.listen({
    accept: (id) => { events.push(['accept', at()]); h.accept(id); },
    connectFailed: (id, a, code) => { events.push(['connectFailed', at(), a, code]); h.connectFailed?.(id, a, code); },
    connectSlow: (id, a) => { events.push(['connectSlow', at(), a]); h.connectSlow?.(id, a); },
    connected: (id, a) => { events.push(['connected', at(), a, synSent()]); h.connected?.(id, a); },
    closed: (id, from, to, reason) => { events.push(['closed', at(), REASONS[reason]]); done(); },
  }, { host: '127.0.0.1', port: 0, mode: 'relay' });
  t0 = performance.now();
  const c = net.connect({ port: fp.port(lid), host: '127.0.0.1', allowHalfOpen: true });
  let reply = '';
  c.on('data', (d) => (reply += d));
  c.on('error', () => {});
  c.on('end', () => c.end());
  const more = await extra(ctx);
  await closed;
  fp.closeListener(lid);
  fp.forget(lid);
  await sleep(50);
  console.log(JSON.stringify({ scenario: name, events, reply, synSentAfter: synSent(), fdsLeft: fds() - before, ...more }));
}

// A connect timeout: ETIMEDOUT after timeoutMs, then the handler answers the client.
await scenario('timeout', ({ fp }) => ({
  accept: (id) => fp.connect(id, HOLE, 80, { timeoutMs: 300 }),
  connectFailed: (id) => fp.end(id, Buffer.from('HTTP/1.1 504 Gateway Timeout\r\n\r\n')),
}));

// Two black holes racing: both time out, each reported once with its attempt number.
await scenario('both-time-out', ({ fp }) => {
  let failed = 0;
  return {
    accept: (id) => fp.connect(id, HOLE, 80, { timeoutMs: 400, raceMs: 100 }),
    connectSlow: (id) => fp.connect(id, HOLE2, 80, { timeoutMs: 200 }),
    connectFailed: (id) => { if (++failed === 2) fp.destroy(id); },
  };
});

// The race: attempt 0 is unanswered, connectSlow after raceMs, attempt 1 wins and attempt 0's socket is closed
// (no SYN-SENT left; its timeout never reports), and the relay works.
await scenario('race', ({ fp }) => ({
  accept: (id) => fp.connect(id, HOLE, 80, { timeoutMs: 800, raceMs: 150 }),
  connectSlow: (id) => fp.connect(id, '127.0.0.1', UP, { timeoutMs: 800 }),
}), async ({ events, at }) => {
  // Past attempt 0's deadline: nothing more is reported for it.
  await sleep(1000);
  return { quietUntil: at(), eventsByThen: events.length };
});

// cancel(): the attempt's socket is closed at once, no event follows for it.
await scenario('cancel', ({ fp }) => ({
  accept: (id) => {
    fp.connect(id, HOLE, 80, { timeoutMs: 300 });
    setTimeout(() => {
      const during = synSent();
      fp.cancel(id, 0);
      setTimeout(() => { console.log(JSON.stringify({ cancel: { during, after: synSent() } })); fp.destroy(id); }, 500);
    }, 100);
  },
}));

fp.close();
up.close();
console.log(JSON.stringify({ done: true }));
