/**
 * The router commands: the image's entrypoint behaviour (run by
 * EGRESS_ROUTER_MODE), `render` and `check`. Wiring only: parsing is in
 * config/, plans in plan/, side effects in apply/ and engines/.
 */
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import { resolveFiles, type Env } from '../config/env.js';
import { parseMode, type Mode } from '../config/mode.js';
import { parseGateway, parseRedirectConfig, parseSource } from '../config/redirect.js';
import { parseHttpProxyDestinations, describeHttpPolicy } from '../config/http-proxy.js';
import { parseDnsProxyDestinations, describeDnsProxy } from '../config/dns-proxy.js';
import { OPTION_VARS, parseOptions } from '../plan/options.js';
import { describeOp, networkPlan } from '../plan/network.js';
import { redirectTable } from '../plan/redirect.js';
import { ruleCount, toReplaceBatch, toText } from '../plan/nft.js';
import { envHelp, type CliContext } from './context.js';
import { firewallSummary } from './firewall.js';

export const ROUTER_VARS: Record<string, string> = {
  EGRESS_ROUTER_MODE: 'init | legacy (default) | http-proxy | dns-proxy | unit-test',
  EGRESS_SOURCE: 'the egress IP, IP or IP/len, put on macvlan0',
  EGRESS_GATEWAY: 'the gateway of the egress network',
  EGRESS_DESTINATION: 'redirect lines: "<port> <tcp|udp> <ip> [<remote_port>]", last line may be a fallback "<ip>"',
  EGRESS_DESTINATION_FILE: 'read EGRESS_DESTINATION from this file instead (a mounted ConfigMap)',
  EGRESS_ROUTER_DEBUG: 'set to log debug detail',
  ...OPTION_VARS,
};

/** What the router part reads and validates, for a given mode. */
function routerConfig(env: Env, mode: Mode) {
  const options = parseOptions(env);
  if (mode === 'http-proxy' || mode === 'dns-proxy') {
    // These modes only set up the network; EGRESS_DESTINATION is not read.
    const source = parseSource(env.EGRESS_SOURCE);
    return { mode, options, source, gateway: parseGateway(env.EGRESS_GATEWAY, source), redirect: undefined };
  }
  const redirect = parseRedirectConfig(resolveFiles(env));
  return { mode, options, source: redirect.source, gateway: redirect.gateway, redirect };
}

function renderText(env: Env, json: boolean): string {
  const cfg = parseRedirectConfig(resolveFiles(env));
  const table = redirectTable({ config: cfg, options: parseOptions(env) });
  return json ? JSON.stringify(toReplaceBatch(table), null, 2) + '\n' : toText(table);
}

export function registerRouter(program: Command, ctx: () => CliContext): void {
  program
    .command('run', { isDefault: true })
    .description('set up the egress network and run the mode named by EGRESS_ROUTER_MODE (the image entrypoint)')
    .addHelpText('after', envHelp(ROUTER_VARS))
    .action(async () => {
      const c = ctx();
      const mode = parseMode(c.env.EGRESS_ROUTER_MODE);
      if (mode === 'unit-test') return void process.stdout.write(renderText(c.env, false));
      const cfg = routerConfig(c.env, mode);
      const log = c.logger(c.env.EGRESS_ROUTER_DEBUG ? 'debug' : 'info');
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
      const file = c.env.EGRESS_DESTINATION_FILE;
      const unwatch = file && cfg.redirect ? watchDestinationFile(file, cfg.redirect, cfg.options, log, guard) : () => {};
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
      process.stdout.write(renderText(env, !!o.json));
      if (o.network) {
        const cfg = routerConfig(env, parseMode(env.EGRESS_ROUTER_MODE));
        const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
        process.stdout.write('\n' + ops.map((op) => `# ${describeOp(op)}`).join('\n') + '\n');
      }
    });

  program
    .command('check')
    .argument('[part]', 'router | http-proxy | dns-proxy | firewall (default: router)', 'router')
    .description('validate the variables a part reads; print a summary, or the first error and exit 1')
    .addHelpText('after', envHelp({
      ...ROUTER_VARS,
      EGRESS_HTTP_PROXY_DESTINATION: 'http-proxy rules', EGRESS_HTTP_PROXY_DESTINATION_FILE: 'read them from this file instead',
      EGRESS_DNS_PROXY_DESTINATION: 'dns-proxy forwards', EGRESS_DNS_PROXY_DESTINATION_FILE: 'read them from this file instead',
    }))
    .action((part: string) => {
      const env = ctx().env;
      process.stdout.write(checkSummary(env, part).join('\n') + '\n');
    });
}

export function checkSummary(env: Env, part: string): string[] {
  const files = resolveFiles(env);
  if (part === 'http-proxy') {
    const p = parseHttpProxyDestinations(files.EGRESS_HTTP_PROXY_DESTINATION);
    return ['http-proxy: configuration OK', `policy (${p.rules.length} rules, first match wins):`, ...describeHttpPolicy(p).map((l) => '  ' + l)];
  }
  if (part === 'dns-proxy') {
    const f = parseDnsProxyDestinations(files.EGRESS_DNS_PROXY_DESTINATION);
    return ['dns-proxy: configuration OK', `${f.length} TCP listener(s):`, ...describeDnsProxy(f).map((l) => '  ' + l)];
  }
  if (part === 'firewall') return firewallSummary(env);
  if (part !== 'router') throw new Error(`Unknown part '${part}', must be router, http-proxy, dns-proxy or firewall`);
  const mode = parseMode(env.EGRESS_ROUTER_MODE);
  const cfg = routerConfig(env, mode);
  const out = [`router: configuration OK (mode ${mode}, placement ${cfg.options.placement})`,
    `egress source ${cfg.source.address}${cfg.source.prefix ? '/' + cfg.source.prefix : ''} on ${cfg.options.macvlan}, gateway ${cfg.gateway}`];
  if (cfg.redirect) {
    const d = cfg.redirect.destinations;
    for (const m of d.mappings) out.push(`  ${m.protocol} port ${m.localPort} -> ${m.ip}:${m.remotePort}`);
    out.push(d.fallback ? `  every other port -> ${d.fallback}` : '  every other port: refused');
    const t = redirectTable({ config: cfg.redirect, options: cfg.options });
    out.push(`nftables: table ${t.family} ${t.name}, ${ruleCount(t)} rules`);
  }
  const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode, options: cfg.options });
  out.push('network:', ...ops.map((o) => '  ' + describeOp(o)));
  return out;
}

/** macvlan0 was created into another namespace: continue set-up there. */
function reexecIn(netns: string): void {
  const env = { ...process.env, EGRESS_MACVLAN_NETNS: '' };
  const r = spawnSync('nsenter', [`--net=${netns}`, '--', process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env });
  process.exitCode = r.status ?? 1;
}
