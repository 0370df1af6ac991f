// What every JS benchmark shares: namespaces of its own (a unique prefix per
// run), processes started in them and killed at exit, a temporary folder, and
// the client | middle | server triangle most benches use:
//   client 10.99.1.2 --eth0/c0-- middle 10.99.1.1 | 10.99.2.1 --s0/eth0-- server 10.99.2.2 (+ more)
// Everything created here is removed at exit, also on SIGINT/SIGTERM or a throw.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export const run = (argv, opts = {}) => execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, ...opts }).toString();
export const inNs = (ns, argv) => ['ip', 'netns', 'exec', ns, ...argv];
export const cpus = Number(run(['nproc']).trim());
/** argv pinned to one CPU (not on a one-core machine). */
export const pin = (cpu, argv) => (cpus > 1 ? ['taskset', '-c', String(cpu), ...argv] : argv);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (v) => { const s = [...v].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
export const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

/**
 * A bench's namespaces and processes. `roles`: short names (e.g. ['c', 'p', 's']),
 * each becoming namespace `${prefix}${id}${role}`.
 */
export function harness(prefix, roles) {
  const id = randomBytes(2).toString('hex');
  const NS = Object.fromEntries(roles.map((r) => [r, `${prefix}${id}${r}`]));
  const tmp = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const children = [];
  const etc = [];
  const made = [];

  function cleanup() {
    for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const ns of made) { try { run(['ip', 'netns', 'del', ns]); } catch { /* gone */ } }
    for (const d of etc) rmSync(d, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
  process.on('exit', cleanup);
  for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(130));

  /**
   * A process in a namespace. Its output is kept (or written to tmp/`log`):
   * p.output() is all of it, p.lines the complete lines with when they arrived.
   */
  function start(ns, argv, { env = process.env, log } = {}) {
    const full = inNs(ns, argv);
    const fd = log ? openSync(join(tmp, log), 'w') : 'pipe';
    const p = spawn(full[0], full.slice(1), { stdio: ['pipe', fd, fd], env });
    let out = '', partial = '';
    const lines = [];
    const take = (d) => {
      out += d;
      const parts = (partial + d).split('\n');
      partial = parts.pop();
      for (const l of parts) lines.push({ at: performance.now(), l });
    };
    p.stdout?.on('data', take);
    p.stderr?.on('data', take);
    p.output = () => (log ? readFileSync(join(tmp, log), 'utf8') : out);
    p.lines = lines;
    children.push(p);
    return p;
  }

  /** Until the process has printed `text` (a string or a RegExp on one line); the matching line for a RegExp. */
  async function waitFor(p, text, ms = 15_000) {
    const end = Date.now() + ms;
    for (;;) {
      if (typeof text === 'string' ? p.output().includes(text) : false) return undefined;
      const hit = text instanceof RegExp ? p.lines.find((x) => text.test(x.l)) : undefined;
      if (hit) return hit;
      if (Date.now() > end || p.exitCode !== null) throw new Error(`not seen (${text}):\n${p.output()}`);
      await sleep(20);
    }
  }

  /** Until cond() is true. */
  async function waitUntil(cond, what, ms = 10_000) {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`not ready: ${what}`);
      await sleep(50);
    }
  }

  function namespaces(...names) {
    for (const ns of names) {
      run(['ip', 'netns', 'add', ns]);
      made.push(ns);
      run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    }
  }

  /** The resolv.conf `ip netns exec` bind-mounts in namespace ns. */
  function resolvConf(ns, text) {
    const d = `/etc/netns/${ns}`;
    mkdirSync(d, { recursive: true });
    etc.push(d);
    writeFileSync(join(d, 'resolv.conf'), text);
  }

  /**
   * The triangle, in NS.c, NS[middle] and NS.s. `server`: the server's
   * addresses (first 10.99.2.2); `forward`: the middle routes between its
   * sides; `twReuse`: namespaces that reuse TIME_WAIT ports (connection-rate
   * runs churn through them), `portRange` widens their ephemeral ports.
   */
  function triangle({ middle, server = ['10.99.2.2'], forward = false, twReuse = [], portRange = false }) {
    const m = NS[middle];
    namespaces(NS.c, m, NS.s);
    run(['ip', '-n', NS.c, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', m]);
    run(['ip', '-n', NS.s, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 's0', 'netns', m]);
    run(['ip', '-n', NS.c, 'addr', 'add', '10.99.1.2/24', 'dev', 'eth0']);
    run(['ip', '-n', m, 'addr', 'add', '10.99.1.1/24', 'dev', 'c0']);
    run(['ip', '-n', m, 'addr', 'add', '10.99.2.1/24', 'dev', 's0']);
    for (const a of server) run(['ip', '-n', NS.s, 'addr', 'add', `${a}/24`, 'dev', 'eth0']);
    for (const [ns, dev] of [[NS.c, 'eth0'], [m, 'c0'], [m, 's0'], [NS.s, 'eth0']]) run(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    run(['ip', '-n', NS.c, 'route', 'add', 'default', 'via', '10.99.1.1']);
    run(['ip', '-n', NS.s, 'route', 'add', 'default', 'via', '10.99.2.1']);
    if (forward) run(inNs(m, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']));
    for (const ns of twReuse) {
      run(inNs(ns, ['sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']));
      if (portRange) run(inNs(ns, ['sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']));
    }
  }

  return { id, NS, tmp, start, waitFor, waitUntil, namespaces, resolvConf, triangle };
}
