/**
 * `egress-router check [part]`: the verdict of the very config function that
 * starting the part calls (config/router.ts, http-proxy-options.ts,
 * dns-proxy-options.ts), so check and start agree; then a summary of the plan.
 */
import type { Command } from 'commander';
import { dnsProxyConfig } from '../config/dns-proxy-options.js';
import { describeDnsProxy } from '../config/dns-proxy.js';
import { daemonConfig } from '../config/daemon.js';
import type { Env } from '../config/env.js';
import { describeHttpProxy, httpProxyConfig } from '../config/http-proxy-options.js';
import { routerConfig, ROUTER_VARS } from '../config/router.js';
import { describeOp, networkPlan } from '../plan/network.js';
import { redirectTable } from '../plan/redirect.js';
import { ruleCount } from '../plan/nft.js';
import { serviceConfig, SERVICE_VARS } from '../config/service.js';
import { envHelp, type CliContext } from './context.js';
import { firewallSummary } from './firewall.js';
import { carrierText } from '../engines/fastpath/index.js';

export function registerCheck(program: Command, ctx: () => CliContext): void {
  program
    .command('check')
    .argument('[part]', 'router | http-proxy | dns-proxy | firewall | daemon (default: router)', 'router')
    .description('validate the variables a part reads; print a summary, or the first error and exit 1')
    .addHelpText('after', envHelp({
      ...ROUTER_VARS,
      EGRESS_HTTP_PROXY_DESTINATION: 'http-proxy rules', EGRESS_HTTP_PROXY_DESTINATION_FILE: 'read them from this file instead',
      EGRESS_DNS_PROXY_DESTINATION: 'dns-proxy forwards', EGRESS_DNS_PROXY_DESTINATION_FILE: 'read them from this file instead',
      ...SERVICE_VARS,
    }))
    .action((part: string) => {
      process.stdout.write(checkSummary(ctx().env, part).join('\n') + '\n');
    });
}

export function checkSummary(env: Env, part: string): string[] {
  // The long-running parts also read the runner's variables, after their own (as they start).
  if (part === 'http-proxy') {
    const cfg = httpProxyConfig(env);
    serviceConfig(env);
    return ['http-proxy: configuration OK', ...describeHttpProxy(cfg), `connections: ${carrierText(cfg.fastpath)}`];
  }
  if (part === 'dns-proxy') {
    const { forwards, options } = dnsProxyConfig(env);
    serviceConfig(env);
    const user = options.dataPath === 'kernel' ? [] : [`user-space relay: ${carrierText(options.fastpath)}`];
    return ['dns-proxy: configuration OK', `${forwards.length} TCP listener(s):`, ...describeDnsProxy(forwards).map((l) => '  ' + l), ...user];
  }
  if (part === 'firewall') {
    const out = firewallSummary(env);
    serviceConfig(env);
    return out;
  }
  if (part === 'daemon') {
    // What `daemon` validates before touching anything: the router, its mode's engine, the runner's variables.
    const d = daemonConfig(env);
    const engine = d.httpProxy ? checkSummary(env, 'http-proxy') : d.dnsProxy ? checkSummary(env, 'dns-proxy') : [];
    const m = d.service.metrics;
    const fw = d.firewall ? firewallSummary(env) : [];
    return [...checkSummary(env, 'router'), ...engine, ...fw, `daemon: metrics ${m ? `on ${m.host}:${m.port}` : 'off'}, drain ${d.service.drainSeconds} s`];
  }
  if (part !== 'router') throw new Error(`Unknown part '${part}', must be router, http-proxy, dns-proxy, firewall or daemon`);
  const cfg = routerConfig(env);
  if (cfg.mode === 'legacy') serviceConfig(env);
  const out = [`router: configuration OK (mode ${cfg.mode}, placement ${cfg.options.placement})`,
    `egress source ${cfg.source.address}${cfg.source.prefix ? '/' + cfg.source.prefix : ''} on ${cfg.options.macvlan}, gateway ${cfg.gateway}`];
  if (cfg.redirect) {
    const d = cfg.redirect.destinations;
    for (const m of d.mappings) out.push(`  ${m.protocol} port ${m.localPort} -> ${m.ip}:${m.remotePort}`);
    out.push(d.fallback ? `  every other port -> ${d.fallback}` : '  every other port: refused');
    const t = redirectTable({ config: cfg.redirect, options: cfg.options });
    out.push(`nftables: table ${t.family} ${t.name}, ${ruleCount(t)} rules`);
  }
  const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
  out.push('network:', ...ops.map((o) => '  ' + describeOp(o)));
  return out;
}
