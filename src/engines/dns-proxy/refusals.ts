/**
 * Kernel path: learns in milliseconds that an address refused a connection,
 * from the namespace's conntrack events, instead of at its next health check.
 *
 * A SYN answered by a RST ends its conntrack entry at once: a DESTROY event
 * in state CLOSE, still [UNREPLIED] (no SYN-ACK ever came). Its reply tuple
 * names the address and port that refused. The same event follows a client
 * that gave up before any answer, which for a silent address is the news we
 * want too; a healthy address wrongly dropped is back at its next health
 * check. The refused connection itself is lost (a DNAT cannot re-send the
 * SYN elsewhere): this only keeps the next ones from meeting the address.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../../observe/log.js';

export interface Refusal {
  /** The port the client connected to (ours). */
  readonly port: number;
  /** The address and port that refused, as DNATed to. */
  readonly address: string;
  readonly remotePort: number;
}

const ARGV = ['-E', '-e', 'DESTROY', '-p', 'tcp', '--state', 'CLOSE'];

/** One event line, or undefined when it is not a refused SYN. */
export function parseRefusal(line: string): Refusal | undefined {
  if (!line.includes('[UNREPLIED]') || !/\bCLOSE\b/.test(line)) return undefined;
  // Original tuple first, then the reply tuple.
  const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1]!);
  const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]));
  const dport = [...line.matchAll(/\bdport=(\d+)/g)].map((m) => Number(m[1]));
  if (src.length < 2 || sport.length < 2 || dport.length < 1) return undefined;
  return { port: dport[0]!, address: src[1]!, remotePort: sport[1]! };
}

export class RefusalWatch {
  private child: ChildProcess | undefined;
  private stopped = false;
  private restart: NodeJS.Timeout | undefined;

  constructor(private readonly onRefusal: (r: Refusal) => void, private readonly log: Logger) {}

  /** If we die without stop(), conntrack dies of SIGPIPE at its next event line. */
  start(): void {
    if (this.stopped) return;
    const child = spawn('conntrack', ARGV, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const r = parseRefusal(l);
      if (r) this.onRefusal(r);
    });
    // "N flow events have been shown" at exit, ENOBUFS warnings under load: not ours to act on.
    child.stderr!.resume();
    child.on('error', (e) => this.log.warn({ err: e.message }, 'cannot watch conntrack events (conntrack-tools); dead addresses are found by health checks only'));
    child.on('exit', (code, signal) => {
      this.child = undefined;
      if (this.stopped || (code === null && signal === null)) return;
      this.log.warn({ code, signal }, 'conntrack event watch ended; restarting in 5 s');
      this.restart = setTimeout(() => this.start(), 5000);
      this.restart.unref();
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restart);
    this.child?.kill();
  }
}
