/**
 * `egress-router dns-proxy`: TCP forwarding to IPs and names that stay
 * resolved (issue 5), under the shared runner (signals, drain, health).
 */
import type { Command } from 'commander';
import { dnsProxyConfig, DNS_PROXY_FLAGS, DNS_PROXY_VARS, type DnsProxyConfig } from '../config/dns-proxy-options.js';
import { serviceConfig, SERVICE_VARS } from '../config/service.js';
import type { Engine } from '../lifecycle/engine.js';
import { runService } from '../lifecycle/runner.js';
import type { Logger } from '../observe/log.js';
import { envHelp, withFlags, type CliContext } from './context.js';

export function registerDnsProxy(program: Command, ctx: () => CliContext): void {
  program
    .command('dns-proxy')
    .description('forward TCP ports to IPs or DNS names (EGRESS_DNS_PROXY_DESTINATION), re-resolving names as their TTL expires')
    .option('--mode <path>', "data path: 'auto', 'userspace' or 'kernel' (overrides EGRESS_DNS_PROXY_MODE)")
    .option('--debug', 'log every connection and address change (as EGRESS_DNS_PROXY_DEBUG=1)')
    .addHelpText('after', envHelp({ ...DNS_PROXY_VARS, ...SERVICE_VARS }))
    .action(async (opts: { mode?: string; debug?: boolean }) => {
      const c = ctx();
      const { env } = withFlags(c.env, DNS_PROXY_FLAGS, { mode: opts.mode, debug: opts.debug ? '1' : undefined });
      // The same function `check dns-proxy` calls: config errors exit 1 with one line here, before anything is set up.
      const cfg = dnsProxyConfig(env);
      const service = serviceConfig(env);
      const log = c.logger(cfg.options.debug ? 'debug' : 'warn');
      // The engine is quiet unless something is wrong; the process's own lines (ready, reloads, drain) always show.
      const runLog = c.logger(cfg.options.debug ? 'debug' : 'info');
      await runService({ log: runLog, env: env as NodeJS.ProcessEnv, service, start: async () => [await startDnsProxyEngine(cfg, log)] });
    });
}

/** The engine as both `dns-proxy` and `daemon` start it. */
export async function startDnsProxyEngine(cfg: DnsProxyConfig, log: Logger): Promise<Engine> {
  const { startDnsProxy } = await import('../engines/dns-proxy/index.js');
  return startDnsProxy({ forwards: cfg.forwards, options: cfg.options, log, file: cfg.file });
}
