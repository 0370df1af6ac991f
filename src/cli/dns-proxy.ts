/**
 * `egress-router dns-proxy`: TCP forwarding to IPs and names that stay
 * resolved (issue 5). Runs until SIGTERM/SIGINT, then removes what it set up.
 */
import type { Command } from 'commander';
import { dnsProxyConfig, DNS_PROXY_FLAGS, DNS_PROXY_VARS } from '../config/dns-proxy-options.js';
import { envHelp, withFlags, type CliContext } from './context.js';

export function registerDnsProxy(program: Command, ctx: () => CliContext): void {
  program
    .command('dns-proxy')
    .description('forward TCP ports to IPs or DNS names (EGRESS_DNS_PROXY_DESTINATION), re-resolving names as their TTL expires')
    .option('--mode <path>', "data path: 'auto', 'userspace' or 'kernel' (overrides EGRESS_DNS_PROXY_MODE)")
    .option('--debug', 'log every connection and address change (as EGRESS_DNS_PROXY_DEBUG=1)')
    .addHelpText('after', envHelp(DNS_PROXY_VARS))
    .action(async (opts: { mode?: string; debug?: boolean }) => {
      const c = ctx();
      const { env } = withFlags(c.env, DNS_PROXY_FLAGS, { mode: opts.mode, debug: opts.debug ? '1' : undefined });
      // The same function `check dns-proxy` calls: config errors exit 1 with one line here, before anything is set up.
      const { forwards, options } = dnsProxyConfig(env);
      const log = c.logger(options.debug ? 'debug' : 'warn');
      const { startDnsProxy } = await import('../engines/dns-proxy/index.js');
      const proxy = await startDnsProxy({ forwards, options, log });
      await new Promise<void>((resolve) => {
        const stop = () => { void proxy.stop().finally(resolve); };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}
