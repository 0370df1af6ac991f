// make bench (dns-view): DNS through the firewall's DNS view vs straight to
// the upstream vs through dnsmasq as a forwarder, in one run, in a namespace
// of our own (prefix erbv). Needs root, dnsmasq, dnsperf, nft, a built dist/.
// Layout: forwarders (and the view's nft child) pinned to CPU 0; the
// upstream (dnsmasq answering from host-records) and dnsperf to CPU 1.
//
// Names: 256 names nK.out.bench outside every rule and 256 nK.wild.bench under
// the rule *.wild.bench, each with an address of its own, TTL 300. Two views:
// `view` as configured by default (grace 30 s: once a name's address is in
// the set, the learner's shadow answers the hook and the kernel is not asked
// again until the element nears expiry) and `view-nft` with grace 0, so that
// every answer in a rule costs a real nft transaction (joined with those
// queued meanwhile) before release: the worst case.
// Figures: queries/s at saturation, the forwarder's CPU per
// query (queries per CPU-second = one core's capacity, since with two cores
// the load side can be the bottleneck), and p50/p99 at a fixed rate per
// target, as added latency over the direct path, measured with the targets
// interleaved query by query (bench/dns-view-probe.mjs) so that the noise of
// a shared machine falls on every target alike. Medians of BENCH_ROUNDS rounds.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, harness, inNs as inNsOf, pin, run } from './lib/harness.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RUN = join(ROOT, 'test', 'lab', 'dns-view-run.mjs');
const SECS = Number(process.env.BENCH_SECS ?? 3);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const h = harness('erbv', ['v']);
const NS = h.NS.v, tmp = h.tmp;
/** Everything of this bench runs in its one namespace. */
const inNs = (argv) => inNsOf(NS, argv);
const start = (argv) => h.start(NS, argv);
const waitFor = h.waitUntil;
const UP = 5300;

const dnsmasq = (port, extra) => pin(0, ['dnsmasq', '-k', '-C', '/dev/null', '-u', 'root', `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces',
  '--no-resolv', '--no-hosts', `--pid-file=${tmp}/dnsmasq-${port}.pid`, ...extra]);

/** CPU seconds of a process and its children that are still running (the view's nft). */
function cpuOf(pid) {
  const ticks = (p) => { try { const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); } catch { return 0; } };
  let t = ticks(pid);
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) t += ticks(c);
    }
  } catch { /* gone */ }
  return t / 100;
}

const N = 256;
function dnsperf(port, name, args) {
  const file = join(tmp, `${name}.q`);
  writeFileSync(file, Array.from({ length: N }, (_, k) => `n${k}.${name} A\n`).join(''));
  return run(inNs(pin(1, ['dnsperf', '-s', '127.0.0.1', '-p', String(port), '-d', file, '-t', '2', ...args])), { timeout: (SECS + 30) * 1000, maxBuffer: 256 << 20 });
}

function saturate(t, name) {
  const c0 = t.pid ? cpuOf(t.pid) : 0;
  const out = dnsperf(t.port, name, ['-l', String(SECS), '-c', '8', '-q', '256']);
  const cpu = t.pid ? cpuOf(t.pid) - c0 : 0;
  const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
  const completed = num(/Queries completed:\s+(\d+)/);
  const errs = /Response codes:\s+(.*)/.exec(out)?.[1] ?? '';
  return { qps: num(/Queries per second:\s+([\d.]+)/), lost: num(/Queries lost:\s+(\d+)/), perCpuSec: cpu > 0 ? completed / cpu : null, codes: errs };
}

/** Paired latency: every target in turn, one query at a time (bench/dns-view-probe.mjs). */
function pairedLatency(targets, name) {
  const out = run(inNs(pin(1, [process.execPath, join(ROOT, 'bench', 'dns-view-probe.mjs'), String(RATE), String(SECS), name, targets.map((t) => t.port).join(',')])),
    { timeout: (SECS + 30) * 1000 });
  const r = JSON.parse(out.trim().split('\n').pop());
  return Object.fromEntries(targets.map((t) => [t.name, r[t.port]]));
}

async function main() {
  h.namespaces(NS);
  // As in the firewall: learned addresses go to verdict maps (flags timeout), each element with its rule's chain.
  run(inNs(['nft', 'add table inet erbv; add chain inet erbv r; add map inet erbv l4 { type ipv4_addr : verdict; flags timeout; size 65536; }; add map inet erbv n4 { type ipv4_addr : verdict; flags timeout; size 65536; }; add map inet erbv l6 { type ipv6_addr : verdict; flags timeout; size 65536; }']));
  const records = [];
  for (let k = 0; k < N; k++) records.push(`--host-record=n${k}.out.bench,10.2.0.${k},300`, `--host-record=n${k}.wild.bench,10.1.0.${k},300`);
  const up = start(pin(1, ['dnsmasq', '-k', '-C', '/dev/null', '-u', 'root', `--port=${UP}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
    `--pid-file=${tmp}/up.pid`, ...records]));
  const runView = (port, set, grace) => start(pin(0, [process.execPath, RUN, '--forward', `${port}=127.0.0.1#${UP}`, '--rules', '*.wild.bench', '--table', 'inet/erbv',
    '--set4', set, '--set6', 'l6', '--verdict', 'r', '--grace', String(grace), '--quiet', '--sockets', process.env.BENCH_VIEW_SOCKETS ?? '4']));
  const view = runView(5301, 'l4', 30);
  const viewNft = runView(5305, 'n4', 0);
  // Forwarders as alike as dnsmasq allows: no cache (the view has none), 1024 queries in flight (the view's cap).
  const fwd = start(dnsmasq(5302, [`--server=127.0.0.1#${UP}`, '--cache-size=0', '--dns-forward-max=1024']));
  const floor = start(pin(0, [process.execPath, join(ROOT, 'bench', 'dns-relay-floor.mjs'), '5304', String(UP)]));
  const cached = start(dnsmasq(5303, [`--server=127.0.0.1#${UP}`, '--cache-size=10000', '--dns-forward-max=1024']));
  await waitFor(() => view.output().includes('"ready"') && viewNft.output().includes('"ready"'), 'views');
  await new Promise((r) => setTimeout(r, 500));
  for (const p of [up, fwd, cached]) if (p.exitCode !== null) throw new Error(`dnsmasq exited:\n${p.output()}`);
  const targets = [
    { name: 'direct', port: UP },
    { name: 'view', port: 5301, pid: view.pid },
    { name: 'view-nft', port: 5305, pid: viewNft.pid },
    { name: 'dnsmasq', port: 5302, pid: fwd.pid },
    { name: 'dnsmasq-cache', port: 5303, pid: cached.pid },
    { name: 'node-floor', port: 5304, pid: floor.pid },
  ].filter((t) => !process.env.BENCH_TARGETS || ['direct', 'dnsmasq', ...process.env.BENCH_TARGETS.split(',')].includes(t.name));
  const names = (process.env.BENCH_NAMES ?? 'out.bench,wild.bench').split(',');
  const samples = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]);
    for (const t of order) {
      for (const n of names) {
        const r = saturate(t, n);
        (samples[`${t.name} ${n}`] ??= []).push(r);
        process.stderr.write(`round ${round + 1} ${t.name} ${n}: ${JSON.stringify(r)}\n`);
      }
    }
    // Latency: all targets interleaved query by query, so the machine's noise falls on each alike.
    for (const n of names) {
      const l = pairedLatency(order, n);
      process.stderr.write(`round ${round + 1} latency ${n}: ${JSON.stringify(l)}\n`);
      for (const t of order) {
        const s = samples[`${t.name} ${n}`];
        Object.assign(s[s.length - 1], { p50us: l[t.name].p50us, p99us: l[t.name].p99us });
      }
    }
  }
  for (const v of [view, viewNft]) v.stdin.write('stats\n');
  await new Promise((r) => setTimeout(r, 300));
  const last = (v) => v.output().split('\n').filter((l) => l.includes('"stats"')).pop();
  const stats = `{"view":${last(view)},"view-nft":${last(viewNft)}}`;
  const med = (k, key) => { const v = samples[k].map((r) => r[key]).filter((x) => x !== null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : null; };
  const results = {};
  for (const k of Object.keys(samples)) results[k] = { qps: med(k, 'qps'), perCpuSec: med(k, 'perCpuSec'), p50us: med(k, 'p50us'), p99us: med(k, 'p99us'), lost: med(k, 'lost'), codes: samples[k][0].codes };
  report(results, names, targets, stats);
}

function report(res, names, targets, stats) {
  const rows = [['target', 'name', 'qps', 'x dnsmasq', 'q/CPU-s', 'x dnsmasq', 'p50 µs', 'p99 µs', '+p50 µs', '+p99 µs']];
  const f = (x, d = 0) => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  for (const t of targets) {
    for (const n of names) {
      if (!res[`${t.name} ${n}`]) continue;
      const r = res[`${t.name} ${n}`], d = res[`direct ${n}`], m = res[`dnsmasq ${n}`];
      rows.push([t.name, n, f(r.qps), f(r.qps / m.qps, 2) + 'x', f(r.perCpuSec), r.perCpuSec ? f(r.perCpuSec / m.perCpuSec, 2) + 'x' : '-',
        f(r.p50us), f(r.p99us), t.name === 'direct' ? '-' : f(r.p50us - d.p50us), t.name === 'direct' ? '-' : f(r.p99us - d.p99us)]);
    }
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(`dns-view bench: medians of ${ROUNDS} rounds, ${SECS}s per run, latency at ${RATE} q/s per target, targets interleaved; layout: ${cpus > 1 ? 'forwarders (and the view\'s nft) on CPU 0, upstream and dnsperf on CPU 1' : 'one CPU shared'}; machine shared with other work: noisy`);
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  console.log(`view stats at the end: ${stats}`);
  mkdirSync(join(ROOT, 'bench', 'out'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'out', 'dns-view.json'), JSON.stringify({ secs: SECS, rounds: ROUNDS, rate: RATE, cpus, results: res, stats: stats ? JSON.parse(stats) : null }, null, 2) + '\n');
}

main().then(() => process.exit(0), (e) => { console.error(e.stack ?? e); process.exit(1); });
