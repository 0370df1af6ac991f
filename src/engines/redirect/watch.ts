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
import type { RouterOptions } from '../../plan/options.js';
import { applyRedirect } from './index.js';

export function watchDestinationFile(
  path: string, config: RedirectConfig, options: RouterOptions, log: Logger, guard: boolean, intervalMs = 2000,
): () => void {
  let last: string | undefined;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const text = await readFile(path, 'utf8').catch(() => undefined);
      if (text === undefined || text === last) return;
      const first = last === undefined;
      last = text;
      if (first) return; // the content set-up already applied
      const destinations = parseRedirectDestinations(text, config.source.family);
      await applyRedirect({ ...config, destinations }, options, log, guard);
      log.info({ file: path, mappings: destinations.mappings.length, fallback: destinations.fallback }, 'destinations reloaded');
    } catch (e) {
      const msg = e instanceof ConfigError ? e.message : (e as Error).message;
      log.error({ file: path, err: msg }, 'destinations not reloaded, keeping the running ruleset');
    } finally {
      busy = false;
    }
  };
  void tick();
  const t = setInterval(() => void tick(), intervalMs);
  return () => clearInterval(t);
}
