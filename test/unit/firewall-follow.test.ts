/**
 * Following the policy (src/engines/firewall/follow.ts): a ConfigMap update
 * (the `..data` symlink swapped to a new folder) is seen through the folder
 * watch, once per change after the debounce; an unchanged rewrite is not a
 * change; and the poll alone finds a change the watch cannot see.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { followPolicy } from '../../src/engines/firewall/follow.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A ConfigMap volume as the kubelet writes it: files behind ..data -> ..<timestamp>. */
function configMap(): { dir: string; update(text: string): void } {
  const dir = mkdtempSync(join(tmpdir(), 'fw-follow-'));
  dirs.push(dir);
  let n = 0;
  const update = (text: string) => {
    const ts = `..2026_${n++}`;
    mkdirSync(join(dir, ts));
    writeFileSync(join(dir, ts, 'policy.yaml'), text);
    symlinkSync(ts, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  update('one');
  symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml'));
  return { dir, update };
}

describe('followPolicy', () => {
  it('a ..data swap is one change after the debounce; the same content again is none', async () => {
    const cm = configMap();
    let changes = 0;
    const stop = followPolicy(cm.dir, () => changes++, { debounceMs: 100, pollMs: 60_000 });
    try {
      cm.update('two');
      await sleep(50);
      expect(changes).toBe(0);
      await sleep(300);
      expect(changes).toBe(1);
      cm.update('two');
      await sleep(400);
      expect(changes).toBe(1);
    } finally { stop(); }
  });
  it('the poll finds a change without any watch event (the file path form)', async () => {
    const cm = configMap();
    let changes = 0;
    const stop = followPolicy(join(cm.dir, 'policy.yaml'), () => changes++, { debounceMs: 60_000, pollMs: 100 });
    try {
      cm.update('three');
      await sleep(400);
      expect(changes).toBe(1);
    } finally { stop(); }
  });
});
