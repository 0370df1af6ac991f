/**
 * The DNS proxy under the shared lifecycle (lifecycle/engine.ts): readiness
 * names the ports whose target has no address yet.
 */
import type { DnsProxyConfig } from '../../config/dns-proxy-options.js';
import type { Engine } from '../../lifecycle/engine.js';
import type { Logger } from '../../observe/log.js';
import { startDnsProxy } from './index.js';

export async function dnsProxyEngine(cfg: DnsProxyConfig, log: Logger): Promise<Engine> {
  const proxy = await startDnsProxy({ forwards: cfg.forwards, options: cfg.options, log });
  return {
    name: 'dns-proxy',
    reconfigure: async () => ({ ok: false, error: 'dns-proxy reload is not available yet' }),
    missing: () => proxy.unresolved().map((p) => `port ${p}: target not resolved yet`),
    stats: () => ({ listeners: [] }),
    close: () => proxy.stop(),
    destroy() {},
  };
}
