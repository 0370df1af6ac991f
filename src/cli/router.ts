/**
 * The router commands: the image's entrypoint behaviour (run by
 * EGRESS_ROUTER_MODE) and `render`. Wiring only: parsing is in config/,
 * plans in plan/, side effects in apply/ and engines/.
 */
import type { Command } from 'commander';
import type { RouterOptions } from '../config/options.js';
import type { RedirectConfig } from '../config/redirect.js';
import { renderConfig, routerConfig, ROUTER_VARS } from '../config/router.js';
import { describeOp, networkPlan } from '../plan/network.js';
import { redirectTable } from '../plan/redirect.js';
import { toReplaceBatch, toText } from '../plan/nft.js';
import { serviceConfig, SERVICE_VARS } from '../config/service.js';
import { redirectEngine } from '../engines/redirect/engine.js';
import { runService } from '../lifecycle/runner.js';
import { envHelp, type CliContext } from './context.js';
import { setUpRouter } from './setup.js';

function renderText({ redirect, options }: { redirect: RedirectConfig; options: RouterOptions }, json: boolean): string {
  const table = redirectTable({ config: redirect, options });
  return json ? JSON.stringify(toReplaceBatch(table), null, 2) + '\n' : toText(table);
}

export function registerRouter(program: Command, ctx: () => CliContext): void {
  program
    .command('run', { isDefault: true })
    .description('set up the egress network and run the mode named by EGRESS_ROUTER_MODE (the image entrypoint)')
    .addHelpText('after', envHelp({ ...ROUTER_VARS, ...SERVICE_VARS }))
    .action(async () => {
      const c = ctx();
      // The same function `check` calls: every bad variable fails here, before anything is touched.
      const cfg = routerConfig(c.env);
      const mode = cfg.mode;
      if (mode === 'unit-test') return void process.stdout.write(renderText({ redirect: cfg.redirect!, options: cfg.options }, false));
      // Legacy mode runs under the runner: its variables are checked with the rest, before anything is touched.
      const service = mode === 'legacy' ? serviceConfig(c.env) : undefined;
      const log = c.logger(cfg.debug ? 'debug' : 'info');
      log.info({ mode, placement: cfg.options.placement, source: cfg.source.address, gateway: cfg.gateway }, 'egress-router starting');
      // init and the proxy modes set up and exit (the image's layout: the proxy is a second container).
      if (!service) return void await setUpRouter(cfg, log, true);
      let stop = () => {};
      await runService({
        log, env: c.env as NodeJS.ProcessEnv, service,
        async start() {
          const s = await setUpRouter(cfg, log, false);
          stop = s.stop;
          if (s.movedTo) throw new MovedError();
          const file = cfg.destinationFile ? { path: cfg.destinationFile, text: cfg.destinationText ?? '' } : undefined;
          return [redirectEngine({ config: cfg.redirect!, options: cfg.options, log, guard: s.guard, file })];
        },
        cleanup: () => stop(),
      }).catch((e: unknown) => { if (!(e instanceof MovedError)) throw e; });
    });

  program
    .command('render')
    .description('print the nftables ruleset redirect mode would apply (nft syntax), touching nothing')
    .option('--json', 'print the libnftables JSON batch that is applied with nft -j -f -')
    .option('--network', 'also print the network operations (links, addresses, routes)')
    .option('--sysctl', 'print only the sysctl.d lines set-up needs (for units with ProtectKernelTunables=yes)')
    .addHelpText('after', envHelp(ROUTER_VARS))
    .action((o: { json?: boolean; network?: boolean; sysctl?: boolean }) => {
      const env = ctx().env;
      if (o.sysctl) return void process.stdout.write(sysctlLines(routerConfig(env)));
      process.stdout.write(renderText(renderConfig(env), !!o.json));
      if (o.network) {
        const cfg = routerConfig(env);
        const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
        process.stdout.write('\n' + ops.map((op) => `# ${describeOp(op)}`).join('\n') + '\n');
      }
    });
}

/** Set-up continued in the namespace macvlan0 was created into (that process ran the mode). */
class MovedError extends Error {}

/** The sysctls the network plan sets, as a sysctl.d file: a unit whose /proc/sys is read-only finds them already set. */
function sysctlLines(cfg: ReturnType<typeof routerConfig>): string {
  const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
  const lines = ops.flatMap((o) => (o.op === 'sysctl' ? [`# ${o.why}`, `${o.key} = ${o.value}`] : []));
  return `# egress-router ${cfg.mode}, ${cfg.options.placement} placement (egress-router render --sysctl)\n${lines.join('\n')}\n`;
}
