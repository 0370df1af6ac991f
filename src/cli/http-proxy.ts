/**
 * `egress-router http-proxy`: the second container of the egress HTTP proxy
 * pod (and the same engine in the bare-metal daemon). Flags override env;
 * every limit has a default that suits a pod.
 */
import type { Command } from 'commander';
import { destinationValue } from '../config/env.js';
import { die } from '../config/errors.js';
import { describeHttpPolicy, parseHttpProxyDestinations } from '../config/http-proxy.js';
import { parseCidr, type Cidr } from '../config/ip.js';
import { DEFAULT_LIMITS, type Limits } from '../engines/http-proxy/runtime.js';
import { createLogger, type Logger } from '../observe/log.js';
import { createLineSink } from '../observe/sink.js';
import { envHelp, type CliContext } from './context.js';

const VARS = {
  EGRESS_HTTP_PROXY_DESTINATION: 'rules, one a line: IP, CIDR, host, *.domain, each optionally !-prefixed; * last allows the rest',
  EGRESS_HTTP_PROXY_DESTINATION_FILE: 'read the rules from this file instead',
  EGRESS_HTTP_PROXY_CLIENTS: 'optional: client IPs/CIDRs allowed to use the proxy (space or comma separated; default everyone)',
  EGRESS_HTTP_PROXY_CONNECT_PORTS: 'optional: ports CONNECT may reach, e.g. "443 8443" (default any)',
  EGRESS_HTTP_PROXY_DEBUG: 'set (non-empty) for debug logs',
  EGRESS_PLACEMENT: "'pod' (default) or 'host': host placement binds outbound sockets to EGRESS_SOURCE",
  EGRESS_SOURCE: 'the egress source IP (IP or IP/len), used in host placement',
};

interface Flags {
  listen: string; port: string; maxConnections?: string; maxHeaderSize?: string; headerTimeout?: string;
  idleTimeout?: string; keepaliveTimeout?: string; connectTimeout?: string; clients?: string; connectPorts?: string;
}

export function registerHttpProxy(program: Command, ctx: () => CliContext): void {
  program.command('http-proxy')
    .description('HTTP proxy (CONNECT and plain HTTP) restricted to EGRESS_HTTP_PROXY_DESTINATION')
    .option('--listen <address>', 'listen address', '0.0.0.0')
    .option('--port <port>', 'listen port', '8080')
    .option('--max-connections <n>', `concurrent client connections (default ${DEFAULT_LIMITS.maxConnections})`)
    .option('--max-header-size <bytes>', `request line + headers (default ${DEFAULT_LIMITS.maxHeaderBytes})`)
    .option('--header-timeout <ms>', `time to send complete request headers (default ${DEFAULT_LIMITS.headersTimeoutMs})`)
    .option('--idle-timeout <ms>', `idle tunnel or upstream request (default ${DEFAULT_LIMITS.idleTimeoutMs})`)
    .option('--keepalive-timeout <ms>', `idle client connection between requests (default ${DEFAULT_LIMITS.keepAliveTimeoutMs})`)
    .option('--connect-timeout <ms>', `TCP connect to the target (default ${DEFAULT_LIMITS.connectTimeoutMs})`)
    .option('--clients <list>', 'client allow-list (overrides EGRESS_HTTP_PROXY_CLIENTS)')
    .option('--connect-ports <list>', 'CONNECT port allow-list (overrides EGRESS_HTTP_PROXY_CONNECT_PORTS)')
    .addHelpText('after', envHelp(VARS))
    .action(async (f: Flags) => {
      const { env } = ctx();
      const policy = parseHttpProxyDestinations(destinationValue(env, 'EGRESS_HTTP_PROXY_DESTINATION'));
      const debug = !!env.EGRESS_HTTP_PROXY_DEBUG;
      const placement = env.EGRESS_PLACEMENT || 'pod';
      if (placement !== 'pod' && placement !== 'host') die(`EGRESS_PLACEMENT '${placement}' is invalid, must be 'pod' or 'host'`);
      let localAddress: string | undefined;
      if (placement === 'host') {
        const src = parseCidr((env.EGRESS_SOURCE ?? '').trim());
        if (!src) die(`EGRESS_SOURCE '${env.EGRESS_SOURCE ?? ''}' is not an IP address (host placement binds outbound sockets to it)`);
        localAddress = src.address;
      }
      const clients = list(f.clients ?? env.EGRESS_HTTP_PROXY_CLIENTS)?.map((c) => parseCidr(c) ?? die(`Bad client address '${c}'`));
      const connectPorts = list(f.connectPorts ?? env.EGRESS_HTTP_PROXY_CONNECT_PORTS)?.map((p) => int(p, 'CONNECT port', 1, 65535));
      const limits: Partial<Limits> = {};
      const set = (k: keyof Limits, v: string | undefined, what: string) => { if (v !== undefined) (limits as Record<string, number>)[k] = int(v, what, 1, 2 ** 31 - 1); };
      set('maxConnections', f.maxConnections, '--max-connections');
      set('maxHeaderBytes', f.maxHeaderSize, '--max-header-size');
      set('headersTimeoutMs', f.headerTimeout, '--header-timeout');
      set('idleTimeoutMs', f.idleTimeout, '--idle-timeout');
      set('keepAliveTimeoutMs', f.keepaliveTimeout, '--keepalive-timeout');
      set('connectTimeoutMs', f.connectTimeout, '--connect-timeout');
      const port = int(f.port, '--port', 0, 65535);

      const log = requestLogger(program, ctx, debug ? 'debug' : 'info');
      log.info({ policy: describeHttpPolicy(policy), placement, localAddress, clients: clients?.map(cidrText), connectPorts }, 'http-proxy policy (first match wins)');
      const { startHttpProxy } = await import('../engines/http-proxy/index.js');
      const proxy = await startHttpProxy({ policy, logger: log, host: f.listen, port, localAddress, debug, limits, clients, connectPorts });
      log.info({ listen: f.listen, port: proxy.port }, 'http-proxy listening');
      await new Promise<void>((resolve) => {
        const stop = () => { void proxy.close().then(() => { log.flush(); resolve(); }); };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
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

function list(v: string | undefined): string[] | undefined {
  const items = (v ?? '').split(/[\s,]+/).filter(Boolean);
  return items.length ? items : undefined;
}

function int(v: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) die(`${what} '${v}' is invalid, must be a number from ${min} to ${max}`);
  return Number(v);
}

function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}
