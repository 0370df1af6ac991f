/**
 * `egress-router http-proxy`: the second container of the egress HTTP proxy
 * pod (and the same engine in the bare-metal daemon). Flags are merged into
 * their variables (config/http-proxy-options.ts reads both the same way);
 * every limit has a default that suits a pod.
 */
import type { Command } from 'commander';
import { HTTP_PROXY_FLAGS, HTTP_PROXY_VARS, httpProxyConfig, type HttpProxyConfig } from '../config/http-proxy-options.js';
import { serviceConfig, SERVICE_VARS } from '../config/service.js';
import type { Engine } from '../lifecycle/engine.js';
import { runService } from '../lifecycle/runner.js';
import { describeHttpPolicy } from '../config/http-proxy.js';
import type { Cidr } from '../config/ip.js';
import { DEFAULT_LIMITS } from '../engines/http-proxy/runtime.js';
import { createLogger, type Logger } from '../observe/log.js';
import { createLineSink } from '../observe/sink.js';
import { envHelp, withFlags, type CliContext } from './context.js';

type Flags = Partial<Record<keyof typeof HTTP_PROXY_FLAGS, string>>;

export function registerHttpProxy(program: Command, ctx: () => CliContext): void {
  program.command('http-proxy')
    .description('HTTP proxy (CONNECT and plain HTTP) restricted to EGRESS_HTTP_PROXY_DESTINATION')
    .option('--listen <address>', 'listen address (default 0.0.0.0)')
    .option('--port <port>', 'listen port (default 8080)')
    .option('--max-connections <n>', `concurrent client connections (default ${DEFAULT_LIMITS.maxConnections})`)
    .option('--max-header-size <bytes>', `request line + headers (default ${DEFAULT_LIMITS.maxHeaderBytes})`)
    .option('--header-timeout <ms>', `time to send complete request headers (default ${DEFAULT_LIMITS.headersTimeoutMs})`)
    .option('--idle-timeout <ms>', `idle tunnel or upstream request (default ${DEFAULT_LIMITS.idleTimeoutMs})`)
    .option('--keepalive-timeout <ms>', `idle client connection between requests (default ${DEFAULT_LIMITS.keepAliveTimeoutMs})`)
    .option('--connect-timeout <ms>', `TCP connect to the target (default ${DEFAULT_LIMITS.connectTimeoutMs})`)
    .option('--clients <list>', 'client allow-list (overrides EGRESS_HTTP_PROXY_CLIENTS)')
    .option('--connect-ports <list>', 'CONNECT port allow-list (overrides EGRESS_HTTP_PROXY_CONNECT_PORTS)')
    .addHelpText('after', envHelp({ ...HTTP_PROXY_VARS, ...SERVICE_VARS }))
    .action(async (f: Flags) => {
      // The same function `check http-proxy` calls: every bad variable or flag fails here, before listening.
      const { env, from } = withFlags(ctx().env, HTTP_PROXY_FLAGS, f);
      const cfg = httpProxyConfig(env, from);
      const log = requestLogger(program, ctx, cfg.debug ? 'debug' : 'info');
      const service = serviceConfig(env);
      await runService({ log, env: env as NodeJS.ProcessEnv, service, start: async () => [await startHttpProxyEngine(cfg, log)] });
    });
}

/** The engine as both `http-proxy` and `daemon` start it: the policy printed, then listening. */
export async function startHttpProxyEngine(cfg: HttpProxyConfig, log: Logger): Promise<Engine> {
  const { policy, placement, localAddress, clients, connectPorts, debug } = cfg;
  log.info({ policy: describeHttpPolicy(policy), placement, localAddress, clients: clients?.map(cidrText), connectPorts }, 'http-proxy policy (first match wins)');
  const { startHttpProxy } = await import('../engines/http-proxy/index.js');
  const proxy = await startHttpProxy({ policy, logger: log, host: cfg.listen, port: cfg.port, localAddress, debug, limits: cfg.limits, clients, connectPorts, fastpath: cfg.fastpath, file: cfg.file });
  // `accept` names the path: 'fastpath' unless EGRESS_FASTPATH=0 or the addon is not built.
  log.info({ listen: cfg.listen, port: proxy.port, accept: proxy.accept }, 'http-proxy listening');
  return proxy;
}

/**
 * One line per request is the hot path's only I/O besides the sockets: JSON
 * lines are batched per event-loop turn (observe/sink.ts). Text format
 * (humans, low volume) keeps the CLI's logger.
 */
function requestLogger(program: Command, ctx: () => CliContext, level: string): Logger {
  if ((program.opts().logFormat ?? 'json') !== 'json') return ctx().logger(level);
  return createLogger({ level, format: 'json', destination: createLineSink(1) });
}

function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}
