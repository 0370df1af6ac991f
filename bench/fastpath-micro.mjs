// Micro-benchmark beside the fast path's hot path (native/fastpath): short
// connections through the bare fast-path relay against a bare Node net relay
// (bench/churn-load.mjs relay: two sockets piped), in one run, on loopback.
// Each connection: connect, 100 B out, 100 B echoed back, close (bench/churn.c,
// CONC loops). The relay is pinned to CPU 1, the echo server and the load to
// CPU 0. Reports connections/s and relay CPU per connection (utime+stime of
// its process from /proc over the measured run), medians of rotated rounds.
//   node bench/fastpath-micro.mjs          env: BENCH_SECONDS (3), BENCH_CONC (32), BENCH_ROUNDS (2)
//   node bench/fastpath-micro.mjs serve LISTEN_PORT ECHO_PORT    (internal: the fast-path relay)
// Bounded: every load run lasts BENCH_SECONDS (at most 10), every child is killed by its PID at the end.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const [mode, ...args] = process.argv.slice(2);

if (mode === 'serve') {
  // The bare fast-path relay: every accepted client connected to the echo server, nothing logged or counted.
  const { FastPath } = await import(join(ROOT, 'dist/engines/fastpath/index.js'));
  const fp = new FastPath();
  const echo = Number(args[1]);
  fp.listen({
    accept: (id) => { fp.connect(id, '127.0.0.1', echo, { timeoutMs: 5000, quiet: true }); },
    connectFailed: (id) => fp.destroy(id),
    closed() {},
  }, { host: '127.0.0.1', port: Number(args[0]), mode: 'relay', backlog: 4096 });
  console.log(JSON.stringify({ ready: true }));
} else {
  await run();
}

async function run() {
  const SECS = Math.min(10, Number(process.env.BENCH_SECONDS ?? 3));
  const CONC = Number(process.env.BENCH_CONC ?? 32);
  const ROUNDS = Math.min(5, Number(process.env.BENCH_ROUNDS ?? 2));
  const tmp = mkdtempSync(join(tmpdir(), 'erfp-'));
  const CBIN = join(tmp, 'churn');
  execFileSync('cc', ['-O2', '-o', CBIN, join(ROOT, 'bench', 'churn.c')]);
  const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  /** [user, system] CPU of the whole process in µs. */
  const cpuUs = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return [Number(f[11]) * TICK_US, Number(f[12]) * TICK_US]; };
  const children = [];
  const start = (argv) => {
    const p = spawn('taskset', argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.output = () => out;
    children.push(p);
    return p;
  };
  const ready = async (p) => {
    const end = Date.now() + 10_000;
    while (!p.output().includes('"ready":true')) {
      if (Date.now() > end || p.exitCode !== null) throw new Error(`not ready: ${p.output()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const stop = async (p) => { if (p.exitCode === null) { p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); } };
  const freePort = () => new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); }); });
  const load = (port, secs) => JSON.parse(execFileSync('taskset', ['-c', '0', CBIN, 'churn', `127.0.0.1:${port}`, String(CONC), String(secs)], { timeout: (secs + 10) * 1000 }).toString().trim().split('\n').pop());

  try {
    const echoPort = await freePort();
    const echo = start(['-c', '0', CBIN, 'echo', `127.0.0.1:${echoPort}`]);
    await ready(echo);
    const targets = {
      'fast path relay': (port) => ['-c', '1', process.execPath, fileURLToPath(import.meta.url), 'serve', String(port), String(echoPort)],
      'node net relay': (port) => ['-c', '1', process.execPath, join(ROOT, 'bench', 'churn-load.mjs'), 'relay', `127.0.0.1:${port}`, `127.0.0.1:${echoPort}`],
    };
    const names = Object.keys(targets);
    const res = Object.fromEntries(names.map((n) => [n, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const name of round % 2 ? [...names].reverse() : names) {
        const port = await freePort();
        const relay = start(targets[name](port));
        await ready(relay);
        load(port, 0.5); // warm-up: JIT, slot tables
        const c0 = cpuUs(relay.pid);
        const r = load(port, SECS);
        const c1 = cpuUs(relay.pid);
        await stop(relay);
        res[name].push({ cps: r.connPerSec, usPerConn: (c1[0] + c1[1] - c0[0] - c0[1]) / r.done, userUs: (c1[0] - c0[0]) / r.done, failed: r.failed });
      }
    }
    const med = (v) => { const s = v.slice().sort((x, y) => x - y), m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
    const rows = names.map((n) => ({ name: n, cps: med(res[n].map((x) => x.cps)), us: med(res[n].map((x) => x.usPerConn)), user: med(res[n].map((x) => x.userUs)), failed: res[n].reduce((a, x) => a + x.failed, 0) }));
    const [fast, node] = rows;
    console.log(`short connections on loopback, ${CONC} loops, ${SECS} s x ${ROUNDS} rounds (medians), relay on CPU 1:`);
    for (const r of rows) console.log(`  ${r.name.padEnd(16)} ${r.cps.toFixed(0).padStart(7)} conn/s   ${r.us.toFixed(1).padStart(6)} µs CPU/conn (user ${r.user.toFixed(1)})   ${r.failed} failed`);
    console.log(`  fast path / node: ${(fast.cps / node.cps).toFixed(2)}x conn/s, ${(fast.us / node.us).toFixed(2)}x CPU per connection`);
    console.log(JSON.stringify({ bench: 'fastpath-micro', conc: CONC, secs: SECS, rounds: ROUNDS, rows, raw: res }));
  } finally {
    for (const p of children) await stop(p);
    rmSync(tmp, { recursive: true, force: true });
  }
}
