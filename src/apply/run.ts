/** Running a system command (nft), capturing its output. */
import { spawn } from 'node:child_process';

export interface RunResult { code: number; stdout: string; stderr: string }

export function run(cmd: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // No stdin: a pipe to a child that exits early raises EPIPE, which would
    // crash the daemon (seen with `nft list chain` on a missing table).
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
