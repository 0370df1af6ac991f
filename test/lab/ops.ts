/** Helpers of the operations tests: the daemon in a lab namespace, its health endpoint, waiting. */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { BIN, ROOT, type Lab, type NsKey } from './lab.js';

export const OPS_CLIENT = join(ROOT, 'test/lab/ops-client.mjs');
export type Proc = ChildProcess & { output(): string };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until fn() is truthy (or fails after timeoutMs with the last value). */
export async function until<T>(fn: () => Promise<T> | T, timeoutMs = 8000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met in ${timeoutMs} ms (last: ${JSON.stringify(v)})`);
    await sleep(everyMs);
  }
}

/** `egress-router <argv>` in a namespace, ready once it logs "ready". */
export function startRouter(lab: Lab, ns: NsKey, argv: string[], env: Record<string, string>, timeoutMs = 20_000, ready: string | RegExp = /"msg":"ready"/): Promise<Proc> {
  return lab.spawnReady(ns, [process.execPath, BIN, ...argv], ready, { env: { ...process.env, ...env }, timeoutMs });
}

/** GET the health endpoint from inside the namespace: status and body. */
export async function health(lab: Lab, ns: NsKey, address: string, path: string): Promise<{ status: number; body: string }> {
  const r = await lab.exec(ns, ['curl', '-sS', '-m', '3', '-w', '\n%{http_code}', `http://${address}${path}`]);
  const lines = r.stdout.split('\n');
  const status = Number(lines.pop());
  return { status, body: lines.join('\n') };
}

/** One sample's value from the Prometheus text, by name and a label subset; undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const have = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[2]);
  }
  return undefined;
}

/** Waits for a process to exit; its code (or the signal) and how long it took. */
export function exited(p: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve({ code: p.exitCode, signal: p.signalCode });
  return new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
}

/** Runs a client script in a namespace and parses its JSON line. */
export async function client<T = Record<string, unknown>>(lab: Lab, argv: string[], ns: NsKey = 'client'): Promise<T> {
  const r = await lab.exec(ns, [process.execPath, OPS_CLIENT, ...argv], { timeoutMs: 45_000 });
  return JSON.parse(r.stdout.trim().split('\n').pop() || `{"error":${JSON.stringify(r.stderr)}}`) as T;
}

/**
 * Waits until `ns` holds an established TCP connection to `dst` (host:port),
 * then `settleMs` more for the greeting: a client started on a loaded
 * machine connects late, and a fixed sleep raced it.
 */
export async function established(lab: Lab, ns: NsKey, dst: string, settleMs = 300): Promise<void> {
  await until(async () => (await lab.exec(ns, ['ss', '-Htn', 'state', 'established', 'dst', dst])).stdout.trim() !== '', 10_000);
  await sleep(settleMs);
}
