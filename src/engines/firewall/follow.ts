/**
 * Following the policy file or folder. A mounted ConfigMap is updated by
 * swapping its `..data` symlink, so the folder (or a file's folder) is
 * watched, not the file's inode; events come in bursts, so they are
 * debounced. fs.watch can miss events (network filesystems, a folder that
 * was replaced), so a slow poll of the content's hash backs it up.
 */
import { watch, statSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { policyDigest, readPolicyFiles } from '../../config/firewall.js';

export interface FollowOptions {
  readonly debounceMs?: number;
  readonly pollMs?: number;
  /** The digest of what was applied (config.digest), so a change made before following began is seen too. */
  readonly digest?: string;
}

export function followPolicy(path: string, onChange: () => void, o: FollowOptions = {}): () => void {
  const debounceMs = o.debounceMs ?? 1000;
  let last = o.digest ?? digestOf(path);
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    const d = digestOf(path);
    if (d === last) return;
    last = d;
    onChange();
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(check, debounceMs); };
  let watcher: FSWatcher | undefined;
  try {
    const dir = statSync(path).isDirectory() ? path : dirname(path);
    watcher = watch(dir, { persistent: false }, soon);
    watcher.on('error', () => { watcher?.close(); watcher = undefined; });
  } catch { /* the poll still follows it */ }
  const poll = setInterval(check, o.pollMs ?? 10_000);
  poll.unref();
  return () => { clearTimeout(timer); clearInterval(poll); watcher?.close(); };
}

function digestOf(path: string): string {
  try {
    return policyDigest(readPolicyFiles(path));
  } catch (e) {
    return `unreadable: ${(e as Error).message}`;
  }
}
