/**
 * A long-running `nft -e -i` for small, frequent updates (the DNS view's set
 * elements): one process instead of one per update (spawning nft costs
 * ~10 ms here; a line to a running one well under 1 ms). Each line is one
 * transaction; `-e` makes nft print `# new generation N` once the kernel has
 * committed it, which is the acknowledgement a caller waits for. Errors come
 * on stderr and fail that line only. Lines run one at a time, in order.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export class NftSessionError extends Error {}

interface Job { readonly line: string; readonly resolve: () => void; readonly reject: (e: Error) => void }

export class NftSession {
  private proc: ChildProcessWithoutNullStreams | undefined;
  private readonly queue: Job[] = [];
  private current: Job | undefined;
  private out = '';
  private err = '';
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly o: { command?: string; timeoutMs?: number } = {}) {}

  /** Runs one line of nft commands (`;`-separated: one transaction); resolves once committed. */
  run(line: string): Promise<void> {
    if (this.closed) return Promise.reject(new NftSessionError('nft session closed'));
    if (line.includes('\n')) return Promise.reject(new NftSessionError('one line per transaction'));
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      if (!this.current) this.next();
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const p = spawn(this.o.command ?? 'nft', ['-e', '-i'], { stdio: ['pipe', 'pipe', 'pipe'] });
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
      const job = this.current;
      if (job && /Error/.test(this.err)) {
        setImmediate(() => { if (this.current === job) this.settle(new NftSessionError(`nft: ${this.err.trim().split('\n')[0]}`)); });
      }
    });
    p.stdin.on('error', () => {});
    p.on('error', (e) => this.fail(new NftSessionError(`nft: ${e.message}`)));
    p.on('exit', (code) => { if (this.proc === p) this.fail(new NftSessionError(`nft exited (${code})`)); });
    return p;
  }

  private next(): void {
    const job = this.queue.shift();
    this.current = job;
    if (!job) return;
    this.proc ??= this.start();
    this.out = this.err = '';
    this.timer = setTimeout(() => this.fail(new NftSessionError(`nft gave no answer within ${this.o.timeoutMs ?? 5000} ms`)), this.o.timeoutMs ?? 5000);
    this.proc.stdin.write(job.line + '\n');
  }

  private settle(err?: Error): void {
    const job = this.current;
    if (!job) return;
    clearTimeout(this.timer);
    this.current = undefined;
    this.err = '';
    if (err) job.reject(err); else job.resolve();
    this.next();
  }

  /** The process is gone or stuck: fail the current line, restart for the next. */
  private fail(err: Error): void {
    const p = this.proc;
    this.proc = undefined;
    if (p && p.exitCode === null) p.kill('SIGKILL');
    this.settle(err);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    const p = this.proc;
    this.proc = undefined;
    p?.stdin.end();
    for (const j of [this.current, ...this.queue]) j?.reject(new NftSessionError('nft session closed'));
    this.current = undefined;
    this.queue.length = 0;
  }
}
