/**
 * Legacy mode with EGRESS_DESTINATION_FILE: follow the mounted ConfigMap.
 * Kubernetes updates a ConfigMap volume by swapping a symlink, which inotify
 * watchers on the old inode miss, so poll the path's content instead.
 * A bad new value is logged and the running ruleset stays as it is.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../config/errors.js';
import { parseRedirectDestinations, type RedirectConfig } from '../../config/redirect.js';
import type { Logger } from '../../observe/log.js';
import type { RouterOptions } from '../../config/options.js';
import { applyRedirect } from './index.js';

export interface WatchOptions {
  readonly path: string;
  /** The file's content as set-up read and applied it: the watcher's baseline. */
  readonly applied: string;
  readonly config: RedirectConfig;
  readonly options: RouterOptions;
  readonly log: Logger;
  readonly guard: boolean;
  readonly intervalMs?: number;
  /** For tests: what applies a new configuration (default: the nft ruleset). */
  readonly apply?: (config: RedirectConfig) => Promise<void>;
}

export function watchDestinationFile(w: WatchOptions): () => void {
  const { path, config, log } = w;
  const apply = w.apply ?? ((c: RedirectConfig) => applyRedirect(c, w.options, log, w.guard));
  // Starting from what set-up applied (not from the first poll) means a change
  // made between set-up's read and that poll is seen as a change.
  let last = w.applied;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const text = await readFile(path, 'utf8').catch(() => undefined);
      if (text === undefined || text === last) return;
      last = text;
      const destinations = parseRedirectDestinations(text, config.source.family);
      await apply({ ...config, destinations });
      log.info({ file: path, mappings: destinations.mappings.length, fallback: destinations.fallback }, 'destinations reloaded');
    } catch (e) {
      const msg = e instanceof ConfigError ? e.message : (e as Error).message;
      log.error({ file: path, err: msg }, 'destinations not reloaded, keeping the running ruleset');
    } finally {
      busy = false;
    }
  };
  void tick();
  const t = setInterval(() => void tick(), w.intervalMs ?? 2000);
  return () => clearInterval(t);
}
