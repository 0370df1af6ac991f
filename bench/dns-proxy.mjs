// make bench (dns-proxy): our proxy's two data paths side by side with haproxy
// (tcp mode, same forwarding table) and a direct routed connection, in one run,
// in namespaces of our own (prefix erbd). Needs root, haproxy, a built dist/.
// Layout: proxies pinned to CPU 0, servers and load generator to CPU 1.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const LOAD = join(ROOT, 'bench', 'dns-proxy-load.mjs');
const BIN = join(ROOT, 'bin', 'egress-router');
const SECS = Number(process.env.BENCH_SECS ?? 3);
const IDLE = Number(process.env.BENCH_IDLE_CONNS ?? 2000);
// This VM's figures swing by 2x run to run: several rounds, each in a rotated
// target order, and the median of each figure.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const id = randomBytes(2).toString('hex');
const NS = { c: `erbd${id}c`, p: `erbd${id}p`, s: `erbd${id}s` };
const P_IP = '10.99.1.1', S_IP = '10.99.2.2';
const tmp = mkdtempSync(join(tmpdir(), 'erbd-'));
const children = [];

const run = (argv) => execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const inNs = (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv];
const cpus = Number(run(['nproc']).trim());
const pin = (cpu, argv) => (cpus > 1 ? ['taskset', '-c', String(cpu), ...argv] : argv);

function start(ns, argv, env = process.env) {
  const p = spawn(inNs(ns, argv)[0], inNs(ns, argv).slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  p.output = () => out;
  children.push(p);
  return p;
}

async function waitFor(p, text, ms = 10_000) {
  const end = Date.now() + ms;
  while (!p.output().includes(text)) {
    if (Date.now() > end || p.exitCode !== null) throw new Error(`not ready (${text}):\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One bounded load run in the client namespace; returns its JSON line. */
function load(args, timeoutMs = (SECS + 20) * 1000) {
  const r = execFileSync('ip', ['netns', 'exec', NS.c, ...pin(1, [process.execPath, LOAD, ...args.map(String)])], { timeout: timeoutMs });
  return JSON.parse(r.toString().trim().split('\n').pop());
}

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

async function idleMemory(pid, port) {
  const before = rssKiB(pid);
  const holder = start(NS.c, pin(1, [process.execPath, LOAD, 'idle', P_IP, port, IDLE]));
  await waitFor(holder, '"open"', 60_000);
  await new Promise((r) => setTimeout(r, 1000));
  const after = rssKiB(pid);
  holder.stdin.end();
  await new Promise((r) => holder.once('exit', r));
  return (after - before) / IDLE;
}

function cleanup() {
  for (const p of children) if (p.exitCode === null) p.kill('SIGKILL');
  for (const ns of Object.values(NS)) { try { run(['ip', 'netns', 'del', ns]); } catch { /* not created */ } }
  rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));

function topology() {
  for (const ns of Object.values(NS)) { run(['ip', 'netns', 'add', ns]); run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']); }
  run(['ip', '-n', NS.c, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', NS.p]);
  run(['ip', '-n', NS.s, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 's0', 'netns', NS.p]);
  run(['ip', '-n', NS.c, 'addr', 'add', '10.99.1.2/24', 'dev', 'eth0']);
  run(['ip', '-n', NS.p, 'addr', 'add', `${P_IP}/24`, 'dev', 'c0']);
  run(['ip', '-n', NS.p, 'addr', 'add', '10.99.2.1/24', 'dev', 's0']);
  run(['ip', '-n', NS.s, 'addr', 'add', `${S_IP}/24`, 'dev', 'eth0']);
  for (const [ns, dev] of [[NS.c, 'eth0'], [NS.p, 'c0'], [NS.p, 's0'], [NS.s, 'eth0']]) run(['ip', '-n', ns, 'link', 'set', dev, 'up']);
  run(['ip', '-n', NS.c, 'route', 'add', 'default', 'via', P_IP]);
  run(['ip', '-n', NS.s, 'route', 'add', 'default', 'via', '10.99.2.1']);
  // The direct path is routed through the proxy namespace: same hops as the proxies.
  run(inNs(NS.p, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']));
  // Connection-rate runs churn through ports: reuse TIME_WAIT ones.
  for (const ns of [NS.c, NS.p]) run(inNs(ns, ['sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']));
}

function haproxyConfig() {
  const lines = ['global', '  maxconn 8000', '  nbthread 1', `  pidfile ${tmp}/haproxy.pid`, 'defaults', '  mode tcp',
    '  timeout connect 10s', '  timeout client 1h', '  timeout server 1h'];
  for (const port of [5001, 5002, 5003]) lines.push(`listen p${port}`, `  bind ${P_IP}:${port + 1000}`, `  server s ${S_IP}:${port + 100}`);
  const f = join(tmp, 'haproxy.cfg');
  writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

async function main() {
  topology();
  // Each target gets its own server ports: the proxies all connect from
  // 10.99.2.1, and shared ports would make one target's TIME_WAIT tuples on
  // the server collide with the next target's new connections.
  const srv = start(NS.s, pin(1, [process.execPath, LOAD, 'serve', S_IP, '0,100,200,300']));
  await waitFor(srv, 'ready');
  const hap = start(NS.p, pin(0, ['haproxy', '-db', '-f', haproxyConfig()]));
  const table = (base) => [5001, 5002, 5003].map((p) => `${p + base} ${S_IP} ${p + base / 10}`).join('\n');
  const ours = (mode, base) => start(NS.p, pin(0, [process.execPath, BIN, '--log-format', 'json', 'dns-proxy']), {
    ...process.env, EGRESS_DNS_PROXY_DESTINATION: table(base), EGRESS_DNS_PROXY_MODE: mode, EGRESS_DNS_PROXY_HEALTH_INTERVAL: '5',
  });
  const user = ours('userspace', 2000);
  const kern = ours('kernel', 3000);
  await waitFor(user, 'dns-proxy ready');
  await waitFor(kern, 'dns-proxy ready');
  await new Promise((r) => setTimeout(r, 500));
  if (hap.exitCode !== null) throw new Error(`haproxy exited:\n${hap.output()}`);
  const targets = [
    { name: 'direct', host: S_IP, base: 0 },
    { name: 'haproxy', host: P_IP, base: 1000, pid: hap.pid },
    { name: 'ours-userspace', host: P_IP, base: 2000, pid: user.pid },
    { name: 'ours-kernel', host: P_IP, base: 3000 },
  // BENCH_TARGETS=haproxy,ours-userspace: a quicker comparison while tuning (haproxy and direct are the baselines).
  ].filter((t) => !process.env.BENCH_TARGETS || ['direct', 'haproxy', ...process.env.BENCH_TARGETS.split(',')].includes(t.name));
  // Idle memory first, on fresh processes: after the load rounds a garbage
  // collection during the measurement can make the difference negative.
  const idle = {};
  for (const t of targets) idle[t.name] = t.pid ? await idleMemory(t.pid, t.base + 5002) : null;
  const samples = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]);
    for (const t of order) {
      const port = (p) => p + t.base;
      const r = {};
      r.single = load(['tput', t.host, port(5001), 1, SECS]).bytesPerSec;
      r.eight = load(['tput', t.host, port(5001), 8, SECS]).bytesPerSec;
      r.cps = load(['cps', t.host, port(5003), 8, SECS]).connPerSec;
      const l = load(['lat', t.host, port(5002), 5000]);
      r.p50us = l.p50us; r.p99us = l.p99us;
      samples[t.name].push(r);
      process.stderr.write(`round ${round + 1} ${t.name}: ${JSON.stringify(r)}\n`);
    }
  }
  const results = {};
  for (const t of targets) {
    const med = (k) => { const v = samples[t.name].map((r) => r[k]).sort((x, y) => x - y); return v[Math.floor(v.length / 2)]; };
    results[t.name] = { single: med('single'), eight: med('eight'), cps: med('cps'), p50us: med('p50us'), p99us: med('p99us'),
      // Kernel path: an idle flow is a conntrack entry, not process memory.
      idleKiB: idle[t.name] };
  }
  report(results);
}

function report(res) {
  const h = res.haproxy, d = res.direct;
  const gbit = (b) => (b * 8 / 1e9).toFixed(2);
  const ratio = (x, y) => (x && y ? (x / y).toFixed(2) + 'x' : '-');
  const rows = [['target', '1-stream Gbit/s', 'x hap', '8-stream Gbit/s', 'x hap', 'conn/s', 'x hap', '+p50 µs', '+p99 µs', 'KiB/idle conn']];
  for (const [name, r] of Object.entries(res)) {
    rows.push([name, gbit(r.single), ratio(r.single, h.single), gbit(r.eight), ratio(r.eight, h.eight), r.cps.toFixed(0), ratio(r.cps, h.cps),
      (r.p50us - d.p50us).toFixed(0), (r.p99us - d.p99us).toFixed(0), r.idleKiB === null ? (name === 'direct' ? '-' : 'conntrack') : r.idleKiB.toFixed(1)]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const text = rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n');
  console.log(`dns-proxy bench: medians of ${ROUNDS} rounds, ${SECS}s per run, ${IDLE} idle connections; layout: ${cpus > 1 ? 'proxies on CPU 0, servers and load on CPU 1' : 'one CPU shared'}`);
  console.log(text);
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'dns-proxy.json'), JSON.stringify({ secs: SECS, rounds: ROUNDS, idle: IDLE, cpus, results: res }, null, 2) + '\n');
}

main().then(() => process.exit(0), (e) => { console.error(e.stack ?? e); process.exit(1); });
