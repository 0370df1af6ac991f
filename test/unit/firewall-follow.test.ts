/**
 * Following the firewall's policy with the shared follower
 * (src/lifecycle/follow.ts, as engines/firewall/engine.ts sets it up: the
 * file or folder read as one digest): a ConfigMap update (the `..data`
 * symlink swapped to a new folder) is seen through the folder watch, once
 * per change after the debounce; an unchanged rewrite is not a change; and
 * the poll alone finds a change the watch cannot see.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { policyDigest, readPolicyFiles } from '../../src/config/firewall.js';
import { followFile } from '../../src/lifecycle/follow.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const digest = async (p: string) => policyDigest(readPolicyFiles(p));

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

function follow(path: string, folder: boolean, debounceMs: number, pollMs: number, initial: string) {
  let changes = 0;
  const f = followFile({
    path, varName: 'EGRESS_FIREWALL_POLICY', initial, read: digest, watchDir: folder ? path : undefined, debounceMs, pollMs,
    onChange: async () => { changes++; }, onError: () => {},
  });
  return { f, changes: () => changes };
}

describe('following the firewall policy', () => {
  it('a ..data swap is one change after the debounce; the same content again is none', async () => {
    const cm = configMap();
    const w = follow(cm.dir, true, 100, 60_000, await digest(cm.dir));
    // The follower's first read (a change made during start-up is not missed) finds nothing new.
    await sleep(30);
    try {
      cm.update('two');
      await sleep(50);
      expect(w.changes()).toBe(0);
      await sleep(300);
      expect(w.changes()).toBe(1);
      cm.update('two');
      await sleep(400);
      expect(w.changes()).toBe(1);
    } finally { w.f.close(); }
  });
  it('the poll finds a change without any watch event (the file path form)', async () => {
    const cm = configMap();
    const file = join(cm.dir, 'policy.yaml');
    const w = follow(file, false, 60_000, 100, await digest(file));
    try {
      cm.update('three');
      await sleep(400);
      expect(w.changes()).toBe(1);
    } finally { w.f.close(); }
  });
});
