/**
 * `egress-router daemon`: one process sets up the network and runs the
 * engine of EGRESS_ROUTER_MODE under the shared runner (lifecycle/runner.ts):
 * legacy (redirect), http-proxy or dns-proxy, in pod or host placement, and
 * the egress firewall beside it when EGRESS_FIREWALL_POLICY is set. The
 * image's entrypoint (`run`) and its two-container form are unchanged.
 */
import type { Command } from 'commander';
import { daemonConfig } from '../config/daemon.js';
import { DNS_PROXY_VARS } from '../config/dns-proxy-options.js';
import { FIREWALL_VARS } from '../config/firewall.js';
import { HTTP_PROXY_VARS } from '../config/http-proxy-options.js';
import { ROUTER_VARS } from '../config/router.js';
import { SERVICE_VARS } from '../config/service.js';
import { redirectEngine } from '../engines/redirect/engine.js';
import type { Engine } from '../lifecycle/engine.js';
import { runService } from '../lifecycle/runner.js';
import { envHelp, type CliContext } from './context.js';
import { httpProxyReady, startHttpProxyEngine } from './http-proxy.js';
import { startDnsProxyEngine } from './dns-proxy.js';
import { setUpRouter } from './setup.js';

export function registerDaemon(program: Command, ctx: () => CliContext): void {
  program
    .command('daemon')
    .description('set up the network and run the engine of EGRESS_ROUTER_MODE (legacy, http-proxy, dns-proxy) in one process, with live reload, health and metrics')
    .addHelpText('after', envHelp({ ...ROUTER_VARS, ...SERVICE_VARS, ...HTTP_PROXY_VARS, ...DNS_PROXY_VARS, ...FIREWALL_VARS }))
    .action(async () => {
      const c = ctx();
      // Every part this process will run is validated before anything is touched.
      const cfg = daemonConfig(c.env);
      if (cfg.httpProxy) httpProxyReady(cfg.httpProxy);
      const r = cfg.router;
      const log = c.logger(r.debug || cfg.httpProxy?.debug || cfg.dnsProxy?.options.debug ? 'debug' : 'info');
      log.info({ mode: r.mode, placement: r.options.placement, source: r.source.address, gateway: r.gateway }, 'egress-router daemon starting');
      let stop = () => {};
      await runService({
        log, env: c.env as NodeJS.ProcessEnv, service: cfg.service,
        async start() {
          const s = await setUpRouter(r, log, false);
          stop = s.stop;
          if (s.movedTo) throw new Error(`macvlan0 was created into ${s.movedTo}: run the daemon in that namespace (EGRESS_MACVLAN_NETNS is for init containers)`);
          const engines: Engine[] = [];
          if (r.redirect) {
            const file = r.destinationFile ? { path: r.destinationFile, text: r.destinationText ?? '' } : undefined;
            engines.push(redirectEngine({ config: r.redirect, options: r.options, log, guard: s.guard, file }));
          }
          if (cfg.httpProxy) engines.push(await startHttpProxyEngine(cfg.httpProxy, log));
          if (cfg.dnsProxy) engines.push(await startDnsProxyEngine(cfg.dnsProxy, log));
          if (cfg.firewall) {
            const { startFirewallEngine } = await import('../engines/firewall/engine.js');
            engines.push(await startFirewallEngine(c.env, cfg.firewall, log, !!c.env.EGRESS_ROUTER_DEBUG));
          }
          return engines;
        },
        cleanup: () => stop(),
      });
    });
}
