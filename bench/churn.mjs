// make bench (churn): the per-connection cost of short connections (issue 14),
// our two user-space paths beside their references in one run:
//   CONNECT tunnels: squid, our HTTP proxy, and a bare Node CONNECT proxy (the floor);
//   plain TCP relay: haproxy (tcp mode), our DNS proxy's user-space path, and a bare Node relay (the floor);
//   and our two engines again on Node sockets (EGRESS_FASTPATH=0, `-sockets`): what the native fast path buys.
// Each connection: connect, (CONNECT and its 200), 100 B out, 100 B echoed back, close;
// CONC loops for SECS. Per target: connections/s, engine CPU per connection
// (utime+stime of the engine's process from /proc/<pid>/stat over the run:
// all its threads), RSS per idle connection. Namespaces erbc*, engines pinned
// to CPU 1, echo server and load generator on CPU 0. Medians of rotated rounds.
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, mkdirSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { harness, pin, rssKiB, sleep } from './lib/harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const LOAD = join(ROOT, 'bench', 'churn-load.mjs');
const CSRC = join(ROOT, 'bench', 'churn.c');
const BIN = join(ROOT, 'bin', 'egress-router');
const SECS = Number(process.env.BENCH_SECONDS ?? 5);
const CONC = Number(process.env.BENCH_CONC ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IDLE = Number(process.env.BENCH_IDLE_CONNS ?? 2000);
const ENGINE_CPU = process.env.BENCH_ENGINE_CPU ?? '1', LOAD_CPU = process.env.BENCH_LOAD_CPU ?? '0';
const { NS, tmp, start, waitFor, triangle } = harness('erbc', ['c', 'p', 's']);
const P_IP = '10.99.1.1', S_IP = '10.99.2.2';
chmodSync(tmp, 0o777); // squid drops to user 'proxy'
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

// The C load generator (churn.c): a Node one on the shared core was the limit.
const CBIN = join(tmp, 'churn');
execFileSync('cc', ['-O2', '-o', CBIN, CSRC]);

function load(args, timeoutMs = (SECS + 40) * 1000) {
  const r = execFileSync('ip', ['netns', 'exec', NS.c, ...pin(LOAD_CPU, [CBIN, ...args.map(String)])], { timeout: timeoutMs });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

/** utime + stime of the whole process (every thread), in µs. */
const cpuUs = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * TICK_US; };

async function idleMemory(t) {
  const before = rssKiB(t.pid);
  const holder = start(NS.c, pin(LOAD_CPU, [process.execPath, LOAD, 'idle', t.addr, IDLE, ...(t.target ? [t.target] : [])]));
  await waitFor(holder, '"open"', 60_000);
  await sleep(1000);
  const after = rssKiB(t.pid);
  holder.stdin.end();
  await new Promise((r) => holder.once('exit', r));
  await sleep(1000);
  return (after - before) / IDLE;
}

// One echo port per target: the engines all connect from 10.99.2.1, and a
// shared port would make one target's TIME_WAIT tuples collide with the next's.
const TARGETS = [
  { name: 'squid', group: 'tunnel', port: 3128, echo: 7000 },
  { name: 'ours-http-proxy', group: 'tunnel', port: 8080, echo: 7001 },
  { name: 'node-floor-connect', group: 'tunnel', port: 8090, echo: 7002 },
  { name: 'haproxy', group: 'tcp', port: 6001, echo: 7003 },
  { name: 'ours-userspace', group: 'tcp', port: 6002, echo: 7004 },
  { name: 'node-floor-relay', group: 'tcp', port: 6003, echo: 7005 },
  // Our engines on Node sockets (EGRESS_FASTPATH=0): what the native fast path buys, in the same run.
  { name: 'ours-http-proxy-sockets', group: 'tunnel', port: 8082, echo: 7008, env: { EGRESS_FASTPATH: '0' } },
  { name: 'ours-userspace-sockets', group: 'tcp', port: 6005, echo: 7009, env: { EGRESS_FASTPATH: '0' } },
  // BENCH_BASELINE=<folder of another build (bin/, dist/)>: that build's two engines beside ours, in the same run.
  ...(process.env.BENCH_BASELINE ? [
    { name: 'baseline-http-proxy', group: 'tunnel', port: 8081, echo: 7006, bin: join(process.env.BENCH_BASELINE, 'bin', 'egress-router') },
    { name: 'baseline-userspace', group: 'tcp', port: 6004, echo: 7007, bin: join(process.env.BENCH_BASELINE, 'bin', 'egress-router') },
  ] : []),
].filter((t) => !process.env.BENCH_TARGETS || ['squid', 'haproxy', ...process.env.BENCH_TARGETS.split(',')].includes(t.name));

async function main() {
  // Tens of thousands of connections per run: reuse TIME_WAIT ports (our namespaces only).
  triangle({ middle: 'p', twReuse: [NS.c, NS.p], portRange: true });
  const echo = start(NS.s, pin(LOAD_CPU, [CBIN, 'echo', ...TARGETS.map((t) => `${S_IP}:${t.echo}`)]));
  await waitFor(echo, 'ready');
  const E = (t) => `${S_IP}:${t.echo}`;
  const procs = {};
  for (const t of TARGETS) {
    t.addr = `${P_IP}:${t.port}`;
    if (t.group === 'tunnel') t.target = E(t);
    if (t.name === 'squid') {
      writeFileSync(join(tmp, 'squid.conf'), [`http_port ${t.addr}`, `pid_filename ${tmp}/squid.pid`, `cache_log ${tmp}/cache.log`,
        `access_log stdio:${tmp}/access.log`, `coredump_dir ${tmp}`, 'cache deny all', 'max_filedescriptors 16384',
        'acl bench_dst dst 10.99.2.0/24', 'http_access allow bench_dst', 'http_access deny all', 'shutdown_lifetime 0 seconds', ''].join('\n'));
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, ['squid', '-N', '-f', join(tmp, 'squid.conf')]), { log: 'squid.out' });
    } else if (t.name.startsWith('ours-http-proxy') || t.name === 'baseline-http-proxy') {
      // Default logging: a JSON line per tunnel to stdout (a file here), as deployed.
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, [process.execPath, t.bin ?? BIN, 'http-proxy', '--listen', P_IP, '--port', String(t.port), '--max-connections', '16384']),
        { env: { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: '10.99.2.0/24', ...t.env }, log: `${t.name}.log` });
    } else if (t.name === 'node-floor-connect') {
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, [process.execPath, LOAD, 'connect', t.addr]));
    } else if (t.name === 'haproxy') {
      writeFileSync(join(tmp, 'haproxy.cfg'), ['global', '  maxconn 8000', '  nbthread 1', `  pidfile ${tmp}/haproxy.pid`, 'defaults', '  mode tcp',
        '  timeout connect 10s', '  timeout client 1h', '  timeout server 1h', 'listen p', `  bind ${t.addr}`, `  server s ${E(t)}`, ''].join('\n'));
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, ['haproxy', '-db', '-f', join(tmp, 'haproxy.cfg')]), { log: 'haproxy.out' });
    } else if (t.name.startsWith('ours-userspace') || t.name === 'baseline-userspace') {
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, [process.execPath, t.bin ?? BIN, 'dns-proxy']),
        { env: { ...process.env, EGRESS_DNS_PROXY_DESTINATION: `${t.port} ${S_IP} ${t.echo}`, EGRESS_DNS_PROXY_MODE: 'userspace', ...t.env }, log: `${t.name}.log` });
    } else if (t.name === 'node-floor-relay') {
      procs[t.name] = start(NS.p, pin(ENGINE_CPU, [process.execPath, LOAD, 'relay', t.addr, E(t)]));
    }
    t.pid = procs[t.name].pid;
  }
  // Ready when one connection goes through (bounded: 100 tries).
  for (const t of TARGETS) {
    for (let i = 0; ; i++) {
      try { if (load(['churn', t.addr, 1, 0.1, ...(t.target ? [t.target] : [])]).done > 0) break; } catch { /* not yet */ }
      if (i > 100 || procs[t.name].exitCode !== null) throw new Error(`${t.name} not ready:\n${procs[t.name].output()}`);
      await sleep(100);
    }
  }
  const idle = {};
  if (IDLE > 0) for (const t of TARGETS) idle[t.name] = await idleMemory(t);
  // Warm-up (JIT, pools), then rotated rounds.
  for (const t of TARGETS) load(['churn', t.addr, CONC, 1, ...(t.target ? [t.target] : [])]);
  const samples = Object.fromEntries(TARGETS.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length])) {
      const c0 = cpuUs(t.pid);
      const r = load(['churn', t.addr, CONC, SECS, ...(t.target ? [t.target] : [])]);
      const cpu = cpuUs(t.pid) - c0;
      const s = { cps: r.connPerSec, cpuUs: cpu / Math.max(1, r.done), busy: cpu / (SECS * 1e6), failed: r.failed };
      samples[t.name].push(s);
      process.stderr.write(`round ${round + 1} ${t.name}: ${JSON.stringify(s)}\n`);
    }
  }
  const med = (v) => v.slice().sort((x, y) => x - y)[Math.floor(v.length / 2)];
  const res = {};
  for (const t of TARGETS) {
    const v = samples[t.name];
    res[t.name] = { group: t.group, cps: med(v.map((s) => s.cps)), cpuUs: med(v.map((s) => s.cpuUs)), busy: med(v.map((s) => s.busy)),
      failed: v.reduce((n, s) => n + s.failed, 0), idleKiB: idle[t.name] };
  }
  report(res);
}

function report(res) {
  const ratio = (x, y) => (x && y ? (x / y).toFixed(2) + 'x' : '-');
  const rows = [['target', 'conn/s', 'x ref', 'engine CPU µs/conn', 'x ref', 'engine busy', 'KiB/idle conn', 'x ref', 'failed']];
  for (const [name, r] of Object.entries(res)) {
    const ref = res[r.group === 'tunnel' ? 'squid' : 'haproxy'];
    rows.push([name, r.cps.toFixed(0), ratio(r.cps, ref?.cps), r.cpuUs.toFixed(1), ratio(r.cpuUs, ref?.cpuUs), `${(r.busy * 100).toFixed(0)}%`,
      r.idleKiB === undefined ? '-' : r.idleKiB.toFixed(1), r.idleKiB === undefined ? '-' : ratio(r.idleKiB, ref?.idleKiB), String(r.failed)]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const text = rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n');
  const head = `churn bench (${new Date().toISOString()}): ${CONC} concurrent connect / 100 B each way / close loops, ${SECS}s per run, medians of ${ROUNDS} rotated rounds, ${IDLE} idle connections; engines pinned to CPU ${ENGINE_CPU}, echo server and load generator on CPU ${LOAD_CPU}; x ref = against squid (tunnels) or haproxy (tcp)`;
  console.log(head);
  console.log(text);
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'churn.txt'), `${head}\n${text}\n`);
}

main().then(() => process.exit(0), (e) => { console.error(e.stack ?? e); process.exit(1); });
