/**
 * A real DNS server (test/lab/dns-server.mjs) in a lab namespace, with a zone
 * the test changes while it runs. The zone lives in a temp dir; the server
 * re-reads it when it changes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './lab.js';

// The sources' copy, so the compiled lab (build/, e.g. the demo) finds it too.
export const DNS_SERVER = join(ROOT, 'test', 'lab', 'dns-server.mjs');

export interface ZoneRecord {
  A?: string[];
  AAAA?: string[];
  ttl?: number;
  /** UDP answers carry TC and no records, forcing the client onto TCP. */
  truncate?: boolean;
  delayMs?: number;
  rcode?: string;
  /** Alias: answers follow the chain through the zone. */
  CNAME?: string;
}
export type Zone = Record<string, ZoneRecord>;

export interface DnsServer {
  readonly process: ChildProcess;
  setZone(zone: Zone): void;
  /** Queries seen so far, as "query <name> <type> <udp|tcp>" lines. */
  queries(): string[];
  stop(): Promise<void>;
}

/** The part of the lab this needs, so it also works without a lab (loopback). */
export interface Spawner {
  spawn(ns: 'inet', argv: readonly string[], opts?: { env?: NodeJS.ProcessEnv }): ChildProcess;
}

export async function startDnsServer(lab: Spawner | null, opts: { address: string; port?: number; zone: Zone }): Promise<DnsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'erd-zone-'));
  const file = join(dir, 'zone.json');
  let n = 0;
  const setZone = (zone: Zone) => {
    // Write then rename: the server never reads a half-written zone.
    const tmp = join(dir, `zone.${n++}.tmp`);
    writeFileSync(tmp, JSON.stringify(zone));
    renameSync(tmp, file);
  };
  setZone(opts.zone);
  const listen = `${opts.address.includes(':') ? `[${opts.address}]` : opts.address}:${opts.port ?? 53}`;
  const argv = [process.execPath, DNS_SERVER, '--listen', listen, '--zone', file];
  const p = lab ? lab.spawn('inet', argv) : spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`dns server not ready:\n${out}`)), 10_000);
    const check = () => { if (out.includes('ready ')) { clearTimeout(t); resolve(); } };
    p.stdout!.on('data', check);
    p.on('exit', (code) => { clearTimeout(t); reject(new Error(`dns server exited ${code}:\n${out}`)); });
  });
  p.removeAllListeners('exit');
  return {
    process: p,
    setZone,
    queries: () => out.split('\n').filter((l) => l.startsWith('query ')),
    async stop() {
      if (p.exitCode === null && p.signalCode === null) {
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
