/** Running commands for the lab, inside a namespace or not. */
import { spawn } from 'node:child_process';

export interface ExecResult { code: number; stdout: string; stderr: string }

export function sh(argv: readonly string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    // Every command is bounded in time: a hang fails the test, it never blocks CI.
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    p.on('error', (e) => { clearTimeout(t); reject(e); });
    p.on('close', (code, signal) => { clearTimeout(t); resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }); });
    p.stdin.on('error', () => {}); // the command may exit before reading its input
    p.stdin.end(opts.input ?? '');
  });
}

/** Run and fail loudly on a non-zero exit (for building the topology). */
export async function must(argv: readonly string[]): Promise<string> {
  const r = await sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}
