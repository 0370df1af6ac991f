/**
 * /etc/resolv.conf followed while the proxy runs (issue 9): a changed
 * nameserver or option is used from the next lookup on, without a restart.
 *
 * Two ways a change arrives, and why both are covered:
 *   - a stat per lookup (current()): catches every kind of change, including
 *     an in-place edit of a bind-mounted file (a pod's resolv.conf), whose
 *     inotify events go to the directory it was written through, not ours;
 *   - fs.watch on the folder and on the file: a symlink swap or rename (a
 *     host's resolv.conf) or an edit is noticed at once, so names are
 *     re-resolved with the new servers then rather than at their next TTL
 *     (a name that never resolved may be minutes into its back-off).
 */
import { EventEmitter } from 'node:events';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseResolvConf, type ResolvConf } from './resolv-conf.js';

function stamp(path: string): string {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
  } catch {
    return 'missing';
  }
}

function read(path: string): ResolvConf {
  let text = '';
  try { text = readFileSync(path, 'utf8'); } catch { /* missing file: glibc defaults */ }
  return parseResolvConf(text);
}

const same = (a: ResolvConf, b: ResolvConf) => JSON.stringify(a) === JSON.stringify(b);

/** Events: 'change' (conf, previous) when the settings differ from the last ones read. */
export class ResolvConfFile extends EventEmitter {
  private conf: ResolvConf;
  private seen: string;
  private folderWatch: FSWatcher | undefined;
  // Watches an inode: a rename or symlink swap replaces it, so it is re-armed
  // whenever the file is seen to have changed.
  private fileWatch: FSWatcher | undefined;
  private watching = false;
  private debounce: NodeJS.Timeout | undefined;

  constructor(readonly path = '/etc/resolv.conf') {
    super();
    this.seen = stamp(path);
    this.conf = read(path);
  }

  /** The settings now: one stat, and a re-read only when the file changed. */
  current(): ResolvConf {
    const now = stamp(this.path);
    if (now === this.seen) return this.conf;
    this.seen = now;
    if (this.watching) {
      this.fileWatch?.close();
      this.arm(this.path, false);
    }
    const prev = this.conf;
    this.conf = read(this.path);
    if (!same(prev, this.conf)) this.emit('change', this.conf, prev);
    return this.conf;
  }

  /** Starts watching; without a working watch the per-lookup stat still follows the file. */
  watch(): this {
    this.watching = true;
    this.arm(dirname(this.path), true);
    this.arm(this.path, false);
    return this;
  }

  private arm(target: string, folder: boolean): void {
    const poke = (_: string, name: string | Buffer | null) => {
      // The folder (/etc) reports every file in it: only ours (and a
      // kubelet-style `..data` swap), or unnamed events.
      const n = name === null ? '' : String(name);
      if (folder && n && n !== basename(this.path) && !n.startsWith('..')) return;
      clearTimeout(this.debounce);
      // A burst of events (write, rename, chmod) becomes one re-read.
      this.debounce = setTimeout(() => this.current(), 50);
      this.debounce.unref();
    };
    try {
      const w = watch(target, { persistent: false }, poke);
      w.on('error', () => w.close());
      if (folder) this.folderWatch = w; else this.fileWatch = w;
    } catch { /* not watchable (missing, no inotify): the stat backstop remains */ }
  }

  close(): void {
    clearTimeout(this.debounce);
    this.watching = false;
    this.folderWatch?.close();
    this.fileWatch?.close();
  }
}
