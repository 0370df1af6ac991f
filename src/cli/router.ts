/**
 * The router commands: the image's entrypoint behaviour (run by
 * EGRESS_ROUTER_MODE) and `render`. Wiring only: parsing is in config/,
 * plans in plan/, side effects in apply/ and engines/.
 */
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import type { RouterOptions } from '../config/options.js';
import type { RedirectConfig } from '../config/redirect.js';
import { renderConfig, routerConfig, ROUTER_VARS } from '../config/router.js';
import { describeOp, networkPlan } from '../plan/network.js';
import { redirectTable } from '../plan/redirect.js';
import { toReplaceBatch, toText } from '../plan/nft.js';
import { envHelp, type CliContext } from './context.js';

function renderText({ redirect, options }: { redirect: RedirectConfig; options: RouterOptions }, json: boolean): string {
  const table = redirectTable({ config: redirect, options });
  return json ? JSON.stringify(toReplaceBatch(table), null, 2) + '\n' : toText(table);
}

export function registerRouter(program: Command, ctx: () => CliContext): void {
  program
    .command('run', { isDefault: true })
    .description('set up the egress network and run the mode named by EGRESS_ROUTER_MODE (the image entrypoint)')
    .addHelpText('after', envHelp(ROUTER_VARS))
    .action(async () => {
      const c = ctx();
      // The same function `check` calls: every bad variable fails here, before anything is touched.
      const cfg = routerConfig(c.env);
      const mode = cfg.mode;
      if (mode === 'unit-test') return void process.stdout.write(renderText({ redirect: cfg.redirect!, options: cfg.options }, false));
      const log = c.logger(cfg.debug ? 'debug' : 'info');
      log.info({ mode, placement: cfg.options.placement, source: cfg.source.address, gateway: cfg.gateway }, 'egress-router starting');
      // The apply layer (netlink, nft) loads only for commands that apply.
      const [{ applyNetwork }, { applyRedirect, checkHostIpv6Forwarding, needsForwardGuard }, { watchDestinationFile }] = await Promise.all([
        import('../apply/network.js'), import('../engines/redirect/index.js'), import('../engines/redirect/watch.js'),
      ]);
      if (cfg.redirect) await checkHostIpv6Forwarding(cfg.redirect, cfg.options);
      const guard = cfg.redirect ? await needsForwardGuard(cfg.redirect, cfg.options) : false;
      const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode, options: cfg.options });
      const exiting = mode !== 'legacy';
      const net = await applyNetwork(ops, log, { exiting });
      if (net.movedTo) return reexecIn(net.movedTo);
      if (cfg.redirect) await applyRedirect(cfg.redirect, cfg.options, log, guard);
      log.info({ mode }, 'set-up complete');
      if (mode !== 'legacy') return;
      const unwatch = cfg.destinationFile && cfg.redirect
        ? watchDestinationFile({ path: cfg.destinationFile, applied: cfg.destinationText ?? '', config: cfg.redirect, options: cfg.options, log, guard })
        : () => {};
      await new Promise<void>((resolve) => {
        const keep = setInterval(() => {}, 1 << 30);
        const stop = (sig: string) => { log.info({ signal: sig }, 'exiting'); clearInterval(keep); unwatch(); net.stop(); resolve(); };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });

  program
    .command('render')
    .description('print the nftables ruleset redirect mode would apply (nft syntax), touching nothing')
    .option('--json', 'print the libnftables JSON batch that is applied with nft -j -f -')
    .option('--network', 'also print the network operations (links, addresses, routes)')
    .addHelpText('after', envHelp(ROUTER_VARS))
    .action((o: { json?: boolean; network?: boolean }) => {
      const env = ctx().env;
      process.stdout.write(renderText(renderConfig(env), !!o.json));
      if (o.network) {
        const cfg = routerConfig(env);
        const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
        process.stdout.write('\n' + ops.map((op) => `# ${describeOp(op)}`).join('\n') + '\n');
      }
    });
}

/** macvlan0 was created into another namespace: continue set-up there. */
function reexecIn(netns: string): void {
  const env = { ...process.env, EGRESS_MACVLAN_NETNS: '' };
  const r = spawnSync('nsenter', [`--net=${netns}`, '--', process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env });
  process.exitCode = r.status ?? 1;
}
