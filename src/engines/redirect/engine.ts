/**
 * Redirect mode under the shared lifecycle (lifecycle/engine.ts). The kernel
 * does the forwarding, so there is no listener to drain: a reload is one nft
 * transaction replacing the router's table (established flows keep their NAT
 * through conntrack), and close() leaves the rules in place for the pod's
 * life, as the image does.
 */
import { parseRedirectDestinations, type RedirectConfig } from '../../config/redirect.js';
import type { RouterOptions } from '../../config/options.js';
import type { Logger } from '../../observe/log.js';
import { errorLine, type Engine } from '../../lifecycle/engine.js';
import { applyRedirect } from './index.js';

export interface RedirectEngineOptions {
  readonly config: RedirectConfig;
  readonly options: RouterOptions;
  readonly log: Logger;
  readonly guard: boolean;
  /** EGRESS_DESTINATION_FILE and the text set-up applied from it. */
  readonly file?: { readonly path: string; readonly text: string };
  /** For tests: what applies a configuration (default: the nft table). */
  readonly apply?: (config: RedirectConfig) => Promise<void>;
}

export function redirectEngine(o: RedirectEngineOptions): Engine & { readonly config: RedirectConfig } {
  let config = o.config;
  const apply = o.apply ?? ((c: RedirectConfig) => applyRedirect(c, o.options, o.log, o.guard));
  return {
    name: 'redirect',
    get config() { return config; },
    follows: o.file && { varName: 'EGRESS_DESTINATION_FILE', path: o.file.path, text: o.file.text },
    async reconfigure(text) {
      let next: RedirectConfig;
      try {
        next = { ...config, destinations: parseRedirectDestinations(text, config.source.family) };
        await apply(next);
      } catch (e) {
        return { ok: false, error: errorLine(e) };
      }
      config = next;
      const d = next.destinations;
      return { ok: true, summary: `${d.mappings.length} mapping(s)${d.fallback ? `, fallback ${d.fallback}` : ''}` };
    },
    missing: () => [],
    stats: () => ({ listeners: [] }),
    close: async () => {},
    destroy() {},
  };
}
