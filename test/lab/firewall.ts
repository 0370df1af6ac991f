/**
 * Helpers for the egress firewall's end-to-end tests: the lab's node turned
 * into a router for the pod network (as an OpenShift node is), external
 * addresses beyond the gateway, client probes that tell a refusal from a
 * timeout, EgressNetworkPolicy files in a ConfigMap-like folder, and the
 * firewall daemon with its JSON log lines.
 *
 *   client 10.128.0.20 / pod 10.128.0.10 --cbr0-- node --eth0--> gw --> internet
 *
 * Only lab namespaces are changed (through lab.exec); gw learns the way back
 * to the pod network, so servers see the pods' own addresses.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, ADDR6, type Lab, type NsKey } from './lab.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Scripts live beside the .ts sources; from build/ find them in the repository's test/lab. */
const script = (name: string) => join(HERE.includes('/build/') ? HERE.replace('/build/', '/') : HERE, name);
export const PROBE = script('firewall-probe.mjs');
export const SERVERS = script('servers.mjs');

export const NODE6 = '2001:db8:12::2';

async function run(lab: Lab, n: NsKey, argv: string[]): Promise<void> {
  const r = await lab.exec(n, argv);
  if (r.code !== 0) throw new Error(`${n}: ${argv.join(' ')} failed: ${r.stderr.trim()}`);
}

/** The node forwards between cbr0 and eth0; gw routes the pod network back to it. */
export async function routeThroughNode(lab: Lab, ipv6 = false): Promise<void> {
  await run(lab, 'node', ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await run(lab, 'gw', ['ip', 'route', 'add', '10.128.0.0/24', 'via', ADDR.nodeLan]);
  if (!ipv6) return;
  await run(lab, 'node', ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  await run(lab, 'node', ['ip', 'addr', 'add', `${NODE6}/64`, 'dev', 'eth0', 'nodad']);
  await run(lab, 'node', ['ip', '-6', 'route', 'add', 'default', 'via', ADDR6.gateway]);
  await run(lab, 'gw', ['ip', '-6', 'route', 'add', 'fd00:128::/64', 'via', NODE6]);
  await run(lab, 'client', ['ip', '-6', 'route', 'add', 'default', 'via', ADDR6.node]);
}

/** An address held by the internet namespace outside 203.0.113.0/24 (gw routes it there). */
export async function addExternal(lab: Lab, ip: string, route: string): Promise<void> {
  await run(lab, 'inet', ['ip', 'addr', 'add', `${ip}/32`, 'dev', 'eth0']);
  await run(lab, 'gw', ['ip', 'route', 'add', route, 'via', ADDR.inet[0]]);
}

export interface ProbeResult { ok: boolean; line?: string; err?: string; ms: number }

/** One TCP or UDP exchange from a lab namespace, bounded by `ms` on the client side. */
export async function probe(lab: Lab, n: NsKey, proto: 'tcp' | 'udp', host: string, port: number, ms = 5000): Promise<ProbeResult> {
  const r = await lab.exec(n, [process.execPath, PROBE, proto, host, String(port), String(ms)], { timeoutMs: ms + 5000 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(last) as ProbeResult; } catch { throw new Error(`probe printed ${JSON.stringify(r.stdout)} ${r.stderr}`); }
}

/** An A lookup at `server` from a lab namespace (UDP, TCP when the answer is truncated). */
export async function dnsLookup(lab: Lab, n: NsKey, server: string, name: string, ms = 5000): Promise<ProbeResult> {
  const r = await lab.exec(n, [process.execPath, PROBE, 'dns', server, name, String(ms)], { timeoutMs: ms + 5000 });
  return JSON.parse(r.stdout.trim().split('\n').pop() || '{"ok":false,"err":"no output"}') as ProbeResult;
}

/** "<server> sees <client>:<port>", as servers.mjs words it. */
export const sees = (server: string, port: number, client: string) =>
  new RegExp(`^${esc(server)}:${port} sees ${esc(client)}:\\d+$`);
const esc = (s: string) => s.replace(/[.[\]]/g, '\\$&');

/**
 * A long-lived connection, events stamped on arrival: 'hold' makes a round trip to an echo server every
 * 100 ms; 'watch' only listens to a tick server (the server talks, the client never sends).
 */
export interface Hold { banner(): string | undefined; echoesAfter(t: number): number; error(): string | undefined; done: Promise<void> }

export function hold(lab: Lab, n: NsKey, host: string, port: number, secs: number, mode: 'hold' | 'watch' = 'hold'): Hold {
  const p = lab.spawn(n, [process.execPath, PROBE, mode, host, String(port), String(secs)]);
  const events: { at: number; line: string }[] = [];
  let buf = '';
  p.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { events.push({ at: Date.now(), line: buf.slice(0, i) }); buf = buf.slice(i + 1); }
  });
  return {
    banner: () => events.find((e) => e.line.startsWith('banner '))?.line.slice(7),
    echoesAfter: (t) => events.filter((e) => e.at > t && e.line.startsWith('echo ')).length,
    error: () => events.find((e) => e.line.startsWith('err '))?.line.slice(4),
    done: new Promise((r) => p.once('exit', () => r())),
  };
}

export type Rule = { type: string; to: Record<string, string> };
export const allow = (to: string): Rule => ({ type: 'Allow', to: to.includes('/') ? { cidrSelector: to } : { dnsName: to } });
export const deny = (to: string): Rule => ({ type: 'Deny', to: to.includes('/') ? { cidrSelector: to } : { dnsName: to } });

/** An EgressNetworkPolicy as the OpenShift documentation writes it, in YAML. */
export function policyYaml(rules: Rule[], name = 'default', namespace = 'project1', sources?: string): string {
  const lines = ['kind: EgressNetworkPolicy', 'apiVersion: network.openshift.io/v1', 'metadata:', `  name: ${name}`, `  namespace: ${namespace}`];
  // The per-policy sources (the default comes from EGRESS_FIREWALL_SOURCES).
  if (sources) lines.push('  annotations:', `    egress-router.io/sources: ${JSON.stringify(sources)}`);
  lines.push('spec:', '  egress:');
  for (const r of rules) {
    const [k, v] = Object.entries(r.to)[0]!;
    lines.push(`  - type: ${r.type}`, '    to:', `      ${k}: ${JSON.stringify(v)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * A folder laid out as the kubelet mounts a ConfigMap: `key -> ..data/key`,
 * `..data -> ..<n>`; update() writes a new `..<n>` and renames `..data_tmp` over `..data`.
 */
export class ConfigMapDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'erfw-policy-'));
  private n = 0;
  constructor(files: Record<string, string>) {
    this.swap(files);
    for (const k of Object.keys(files)) symlinkSync(join('..data', k), join(this.dir, k));
  }
  update(files: Record<string, string>): void { this.swap(files); }
  private swap(files: Record<string, string>): void {
    const ts = `..${++this.n}`;
    mkdirSync(join(this.dir, ts));
    for (const [k, v] of Object.entries(files)) writeFileSync(join(this.dir, ts, k), v);
    symlinkSync(ts, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
  }
  remove(): void { rmSync(this.dir, { recursive: true, force: true }); }
}

export type LogLine = Record<string, unknown> & { msg?: string };

/** The log lines (pino JSON) a process printed so far; other lines are skipped. */
export function logLines(output: string): LogLine[] {
  return output.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
    try { return [JSON.parse(l) as LogLine]; } catch { return []; }
  });
}

export async function until<T>(what: string, cond: () => Promise<T | undefined | false> | T | undefined | false, ms: number, every = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** `nft list table` text in a namespace ('' when the table does not exist). */
export async function listTable(lab: Lab, family: string, table: string): Promise<string> {
  const r = await lab.exec('node', ['nft', 'list', 'table', family, table]);
  return r.code === 0 ? r.stdout : '';
}

/** The DNS view's race (issue 11): rot.test's single A record moves among four servers, TTL 1. */
export const ROTATION = [...ADDR.inet, ADDR.fallback];
export const rotatingZone = <Z>(i: number, rest: Z) => ({ 'rot.test': { A: [ROTATION[i % ROTATION.length]!], ttl: 1 }, ...rest });

/** Resolve through the namespace's resolv.conf (getent), then connect at once; prints "ok|fail <addr> <banner>" per try. */
export const resolveAndConnect = (name: string, n: number) => `
for i in $(seq ${n}); do
  a=$(getent ahostsv4 ${name} | head -1 | cut -d' ' -f1)
  if b=$(curl -sS -m 2 telnet://$a:80 </dev/null 2>&1); then echo "ok $a $b"; else echo "fail $a $b"; fi
  sleep 0.1
done`;
