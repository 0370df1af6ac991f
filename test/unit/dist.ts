/**
 * Building dist/ for the tests that run the compiled binary. Several test
 * files (run by parallel workers) need it: a lock directory serialises the
 * builds and an up-to-date check skips a rebuild, so no test runs the binary
 * while another worker's tsc is rewriting the files it imports.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/egress-router');

function newestSource(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return t;
}

function mtime(p: string): number {
  try { return statSync(p).mtimeMs; } catch { return 0; }
}

export async function ensureBuilt(): Promise<void> {
  const lock = join(ROOT, 'node_modules/.erut-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try { mkdirSync(lock); break; } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A lock older than two minutes is left over from a killed run.
      if (Date.now() - mtime(lock) > 120_000) { try { rmdirSync(lock); } catch { /* raced */ } continue; }
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held too long`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (mtime(join(ROOT, 'dist/cli/main.js')) < Math.max(newestSource(join(ROOT, 'src')), mtime(join(ROOT, 'tsconfig.json')))) {
      execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', ROOT], { stdio: 'inherit' });
    }
  } finally {
    rmdirSync(lock);
  }
}
