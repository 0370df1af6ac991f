/**
 * A long-running `nft -e -i` for small, frequent updates (the DNS view's set
 * elements): one process instead of one per update (spawning nft costs
 * ~10 ms here; a line to a running one well under 1 ms). Each line is one
 * transaction; `-e` makes nft print `# new generation N` once the kernel has
 * committed it, which is the acknowledgement a caller waits for. Errors come
 * on stderr and fail that line only. Lines run one at a time, in order;
 * lines that queued up while one ran go together as one transaction (a burst
 * of answers costs one commit), and if that fails each is retried alone, so
 * one bad line never fails another.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export class NftSessionError extends Error {}

interface Job { readonly line: string; readonly resolve: () => void; readonly reject: (e: Error) => void; readonly alone?: boolean }

/** At most this many queued lines are joined into one transaction. */
const MAX_JOIN = 64;

export class NftSession {
  private proc: ChildProcessWithoutNullStreams | undefined;
  private readonly queue: Job[] = [];
  /** The jobs of the line nft is working on (empty: idle). */
  private batch: Job[] = [];
  private seq = 0;
  private out = '';
  private err = '';
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Transactions sent, and lines they carried. */
  readonly counts = { transactions: 0, lines: 0 };

  /** `argv`: how to run nft (default ['nft']; tests prefix `ip netns exec NS`). */
  constructor(private readonly o: { argv?: readonly string[]; timeoutMs?: number } = {}) {}

  /** Runs one line of nft commands (`;`-separated: one transaction); resolves once committed. */
  run(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new NftSessionError('nft session closed'));
    if (line.includes('\n')) return Promise.reject(new NftSessionError('one line per transaction'));
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      if (this.batch.length === 0) this.next();
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const argv = [...(this.o.argv ?? ['nft']), '-e', '-i'];
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      this.out += d;
      if (this.out.includes('# new generation')) { this.out = ''; this.settle(); }
      else if (this.out.length > 1 << 20) this.out = '';
    });
    p.stderr.on('data', (d: string) => {
      this.err += d;
      // The error text comes in a few writes; the first line names it.
      const seq = this.seq;
      if (this.batch.length > 0 && /Error/.test(this.err)) {
        setImmediate(() => { if (this.seq === seq) this.settle(new NftSessionError(`nft: ${this.err.trim().split('\n')[0]}`)); });
      }
    });
    p.stdin.on('error', () => {});
    p.on('error', (e) => this.fail(new NftSessionError(`nft: ${e.message}`)));
    p.on('exit', (code) => { if (this.proc === p) this.fail(new NftSessionError(`nft exited (${code})`)); });
    return p;
  }

  private next(): void {
    const first = this.queue.shift();
    if (!first) return;
    const jobs = [first];
    if (!first.alone) while (jobs.length < MAX_JOIN && this.queue.length > 0 && !this.queue[0]!.alone) jobs.push(this.queue.shift()!);
    this.batch = jobs;
    this.seq++;
    this.counts.transactions++;
    this.counts.lines += jobs.length;
    this.proc ??= this.start();
    this.out = this.err = '';
    const ms = this.o.timeoutMs ?? 5000;
    this.timer = setTimeout(() => this.fail(new NftSessionError(`nft gave no answer within ${ms} ms`)), ms);
    this.proc.stdin.write(jobs.map((j) => j.line).join('; ') + '\n');
  }

  private settle(err?: Error): void {
    const jobs = this.batch;
    if (jobs.length === 0) return;
    clearTimeout(this.timer);
    this.batch = [];
    this.seq++;
    this.err = '';
    if (!err) for (const j of jobs) j.resolve();
    else if (jobs.length === 1) jobs[0]!.reject(err);
    // A joined line failed: each again on its own, first in the queue, in order.
    else this.queue.unshift(...jobs.map((j) => ({ ...j, alone: true })));
    this.next();
  }

  /** The process is gone or stuck: fail the current line, restart for the next. */
  private fail(err: Error): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) p.kill('SIGKILL');
    const jobs = this.batch;
    // Not retried: a stuck nft may have committed them; callers answer SERVFAIL.
    this.batch = jobs.slice(0, 1);
    for (const j of jobs.slice(1)) j.reject(err);
    this.settle(err);
  }

  /** The running nft's PID (tests). */
  get pid(): number | undefined { return this.proc?.pid; }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const p = this.proc;
    this.proc = undefined;
    p?.stdin.end();
    for (const j of [...this.batch, ...this.queue]) j.reject(new NftSessionError('nft session closed'));
    this.batch = [];
    this.queue.length = 0;
  }
}
