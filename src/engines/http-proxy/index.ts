/**
 * The HTTP proxy engine: `startHttpProxy(opts)` → a listener under the
 * shared lifecycle (lifecycle/engine.ts). A reload compiles the new rules and
 * swaps the policy whole: each request reads it once, so requests from then
 * on see the new rules and tunnels already open are untouched.
 */
import { infoWriter } from '../../observe/log.js';
import { compilePolicy } from './policy.js';
import { createResolver } from '../../dns/lookup.js';
import { parseHttpProxyDestinations } from '../../config/http-proxy.js';
import { errorLine, type Engine, type EngineStats } from '../../lifecycle/engine.js';
import { DEFAULT_LIMITS, newHttpStats, type HttpProxyOptions, type Runtime } from './runtime.js';
import { listen } from './server.js';

export type { HttpProxyOptions, Limits } from './runtime.js';
export { DEFAULT_LIMITS } from './runtime.js';

export interface HttpProxy extends Engine {
  readonly port: number;
  /** How connections are accepted: 'fastpath' (native, EGRESS_FASTPATH) or 'net.Socket'. */
  readonly accept: 'fastpath' | 'net.Socket';
}

export interface HttpProxyStart extends HttpProxyOptions {
  /** EGRESS_HTTP_PROXY_DESTINATION_FILE and the rules' text the proxy started from. */
  readonly file?: { readonly path: string; readonly text: string };
}

export async function startHttpProxy(opts: HttpProxyStart): Promise<HttpProxy> {
  const rt: Runtime = {
    policy: compilePolicy(opts.policy),
    draining: false,
    stats: newHttpStats(),
    resolve: opts.resolve ?? createResolver({ timeoutMs: 2000 }),
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    logger: opts.logger,
    access: { request: infoWriter(opts.logger, 'request'), tunnel: infoWriter(opts.logger, 'tunnel') },
    debug: opts.debug ?? false,
    localAddress: opts.localAddress,
    connectPorts: opts.connectPorts ? new Set(opts.connectPorts) : undefined,
    fastpath: opts.fastpath,
  };
  const l = await listen(rt, { host: opts.host ?? '0.0.0.0', port: opts.port ?? 8080, clients: opts.clients });
  const listener = `http-proxy:${l.port}`;
  return {
    name: 'http-proxy',
    port: l.port,
    accept: l.accept,
    follows: opts.file && { varName: 'EGRESS_HTTP_PROXY_DESTINATION_FILE', path: opts.file.path, text: opts.file.text },
    async reconfigure(text) {
      let policy;
      try {
        policy = compilePolicy(parseHttpProxyDestinations(text));
      } catch (e) {
        return { ok: false, error: errorLine(e) };
      }
      rt.policy = policy;
      return { ok: true, summary: `${policy.rules.length} rule(s), ${policy.source.defaultAllow ? 'allow' : 'deny'} everything else` };
    },
    missing: () => [],
    stats: () => stats(rt, listener),
    close: () => l.close(),
    destroy: () => l.destroy(),
  };
}

function stats(rt: Runtime, listener: string): EngineStats {
  const s = rt.stats;
  const decisions: { rule: string; action: 'allow' | 'deny'; count: number }[] = [];
  s.allowHits.forEach((n, i) => { if (n) decisions.push({ rule: String(i + 1), action: 'allow', count: n }); });
  s.denyHits.forEach((n, i) => { if (n) decisions.push({ rule: String(i + 1), action: 'deny', count: n }); });
  if (s.allowDefault) decisions.push({ rule: 'default', action: 'allow', count: s.allowDefault });
  if (s.denyDefault) decisions.push({ rule: 'default', action: 'deny', count: s.denyDefault });
  return { listeners: [{ listener, accepted: s.accepted, active: s.active, refused: { ...s.refused }, bytesIn: s.bytesIn, bytesOut: s.bytesOut }], decisions };
}
