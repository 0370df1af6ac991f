/** The HTTP proxy engine: `startHttpProxy(opts)` → `{ port, close() }`. */
import { infoWriter } from '../../observe/log.js';
import { compilePolicy } from './policy.js';
import { createResolver } from '../../dns/lookup.js';
import { DEFAULT_LIMITS, type HttpProxyOptions, type Runtime } from './runtime.js';
import { listen } from './server.js';

export type { HttpProxyOptions, Limits } from './runtime.js';
export { DEFAULT_LIMITS } from './runtime.js';

export interface HttpProxy {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpProxy(opts: HttpProxyOptions): Promise<HttpProxy> {
  const rt: Runtime = {
    policy: compilePolicy(opts.policy),
    resolve: opts.resolve ?? createResolver({ timeoutMs: 2000 }),
    limits: { ...DEFAULT_LIMITS, ...opts.limits },
    logger: opts.logger,
    access: { request: infoWriter(opts.logger, 'request'), tunnel: infoWriter(opts.logger, 'tunnel') },
    debug: opts.debug ?? false,
    localAddress: opts.localAddress,
    connectPorts: opts.connectPorts ? new Set(opts.connectPorts) : undefined,
  };
  return listen(rt, { host: opts.host ?? '0.0.0.0', port: opts.port ?? 8080, clients: opts.clients });
}
