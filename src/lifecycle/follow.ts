/**
 * Following a `*_FILE` (a mounted ConfigMap), shared by every mode. The
 * kubelet updates a ConfigMap volume by renaming a new `..data` symlink over
 * the old one; `fs.watch` on the file itself sees only the first swap (its
 * inode is gone afterwards), so the folder is watched and every event there
 * re-reads the path. Events come in bursts: a debounce (about a second) turns
 * a burst into one read. A slow poll re-hashes the content as a backstop for
 * what inotify cannot see (NFS, a watch that failed), and `check(true)`
 * (SIGHUP) reloads at once even when the content is unchanged.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';

export interface FollowOptions {
  readonly path: string;
  /** The content the engine started with: the baseline, so a change made before the watch began is still a change. */
  readonly initial: string;
  /** Called with each new content, one at a time. */
  readonly onChange: (text: string, why: string) => Promise<void>;
  /** Called when the file cannot be read (the running configuration stays). */
  readonly onError: (message: string) => void;
  readonly debounceMs?: number;
  readonly pollMs?: number;
  /** Variable name for messages, e.g. EGRESS_DESTINATION_FILE. */
  readonly varName: string;
  /** What is compared and handed to onChange (default: the file's text). A folder of files reads as one digest. */
  readonly read?: (path: string) => Promise<string>;
  /** The folder to watch (default: the file's folder; a followed folder watches itself). */
  readonly watchDir?: string;
}

export interface Follower {
  /** Read now; `force` reloads even unchanged content (SIGHUP). */
  check(force?: boolean, why?: string): Promise<void>;
  close(): void;
}

export const contentHash = (text: string): string => createHash('sha256').update(text).digest('hex');

export function followFile(o: FollowOptions): Follower {
  let last = contentHash(o.initial);
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const once = async (force: boolean, why: string): Promise<void> => {
    let text: string;
    try {
      text = await (o.read ? o.read(o.path) : readFile(o.path, 'utf8'));
    } catch (e) {
      // Unreadable is a failed reload, not an empty configuration.
      const err = e as NodeJS.ErrnoException;
      o.onError(err.code ? `${o.varName} '${o.path}' cannot be read: ${err.code}` : err.message ?? String(e));
      return;
    }
    const h = contentHash(text);
    if (h === last && !force) return;
    last = h;
    await o.onChange(text, why).catch((e: unknown) => o.onError(e instanceof Error ? e.message : String(e)));
  };

  // One reload at a time, in order (bursts are already folded by the debounce).
  let queue: Promise<void> = Promise.resolve();
  const check = (force = false, why = 'file changed'): Promise<void> => {
    queue = queue.then(() => (closed ? undefined : once(force, why)));
    return queue;
  };

  const name = basename(o.path);
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(o.watchDir ?? dirname(o.path), { persistent: false }, (_ev, file) => {
      // `..data` (the swap), the key itself (a plain file edited in place), or unknown; a followed folder: anything.
      if (!o.watchDir && file && file !== name && !file.startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(() => void check(false, 'file changed'), o.debounceMs ?? 1000);
    });
    watcher.on('error', () => { /* the poll still runs */ });
  } catch { /* no inotify here: the poll is the follower */ }
  const poll = setInterval(() => void check(false, 'poll: content changed'), o.pollMs ?? 10_000);
  poll.unref();
  // A change between the engine's read and the watch's start is a change too.
  void check(false, 'file changed before the watch began');

  return {
    check,
    close() {
      closed = true;
      clearTimeout(timer);
      clearInterval(poll);
      watcher?.close();
    },
  };
}
