/**
 * `egress-router firewall [render]`: the egress firewall (issue 10). Wiring
 * only: flags are merged into the environment, config/firewall.ts parses,
 * plan/nft-firewall.ts plans, engines/firewall applies and follows.
 */
import type { Command } from 'commander';
import type { Env } from '../config/env.js';
import { die } from '../config/errors.js';
import { cidrText, FIREWALL_VARS, firewallConfig, firewallTable } from '../config/firewall.js';
import { targetText } from '../config/firewall-policy.js';
import { readResolvConf } from '../dns/resolv-conf.js';
import { deleteTableTx, fullTableText, replaceTableTx, txJson } from '../plan/nft.js';
import { countElements, firewallPlanInput, firewallTable as planTable, linearFirewallTable } from '../plan/nft-firewall.js';
import { viewPorts, viewRuleNames } from '../plan/nft-firewall-view.js';
import { serviceConfig, SERVICE_VARS } from '../config/service.js';
import { runService } from '../lifecycle/runner.js';
import { envHelp, type CliContext } from './context.js';

interface Flags {
  policy?: string; sources?: string; interface?: string; clusterCidrs?: string; maxRules?: string; table?: string;
  once?: boolean; remove?: boolean; dnsView?: boolean; dnsPort?: string; dnsGrace?: string; dnsTimeout?: string; linear?: boolean; json?: boolean;
}

const FLAG_VARS: ReadonlyArray<[keyof Flags, string]> = [
  ['policy', 'EGRESS_FIREWALL_POLICY'], ['sources', 'EGRESS_FIREWALL_SOURCES'], ['interface', 'EGRESS_FIREWALL_INTERFACE'],
  ['clusterCidrs', 'EGRESS_FIREWALL_CLUSTER_CIDRS'], ['maxRules', 'EGRESS_FIREWALL_MAX_RULES'], ['table', 'EGRESS_FIREWALL_TABLE'],
  ['dnsView', 'EGRESS_FIREWALL_DNS_VIEW'], ['linear', 'EGRESS_FIREWALL_LINEAR'], ['dnsPort', 'EGRESS_FIREWALL_DNS_PORT'],
  ['dnsGrace', 'EGRESS_FIREWALL_DNS_GRACE'], ['dnsTimeout', 'EGRESS_FIREWALL_DNS_TIMEOUT'],
];

/** Each flag overrides its variable; boolean flags set it to '1'. */
export function firewallEnv(env: Env, flags: Flags): Env {
  const out: Record<string, string | undefined> = { ...env };
  for (const [flag, name] of FLAG_VARS) {
    const v = flags[flag];
    if (v !== undefined) out[name] = v === true ? '1' : String(v);
  }
  return out;
}

/** `render`: names are not resolved (their sets print empty); nothing is touched. */
export function renderFirewall(env: Env, json: boolean, nameservers = readResolvConf().nameservers): string {
  const cfg = firewallConfig(env);
  const table = (cfg.linear ? linearFirewallTable : planTable)(firewallPlanInput(cfg, nameservers));
  return json ? JSON.stringify(txJson(replaceTableTx(table)), null, 2) + '\n' : fullTableText(table);
}

/** `check firewall`: the same validation as starting, and what would be applied. */
export function firewallSummary(env: Env, nameservers = readResolvConf().nameservers): string[] {
  const cfg = firewallConfig(env);
  const table = planTable(firewallPlanInput(cfg, nameservers));
  const out = [`firewall: configuration OK (${cfg.read} policies read from ${cfg.path}, ${cfg.policies.length} enforced)`];
  for (const p of cfg.policies) {
    out.push(`policy ${p.namespace}/${p.name} for ${p.sources.map(cidrText).join(', ')} (first match wins):`);
    for (const r of p.rules) out.push(`  ${r.n}. ${r.type} ${targetText(r.to)}`);
    out.push(`  ${p.rules.length + 1}. allow everything else`);
  }
  for (const c of cfg.conflicts) out.push(c.message);
  out.push(`nftables: table inet ${cfg.table}, ${table.chains.length} chains, ${table.sets.length} sets, ${countElements(table)} elements`);
  if (cfg.dnsView) {
    const v = viewPorts(cfg.dnsPort, nameservers);
    const names = viewRuleNames(cfg.policies);
    out.push(`dns view: on; sources' DNS (UDP and TCP 53) redirected to port ${v.port} (to ${nameservers.join(', ') || 'no nameserver'})${v.byServer.map((s) => `, ${s.address} on ${s.port}`).join('')}; ` +
      `${names.length} dnsName rules watched (${names.filter((n) => n.startsWith('*.')).length} wildcard); learned TTL + ${cfg.dnsGraceS} s; SERVFAIL past ${cfg.dnsTimeoutMs} ms`);
  } else out.push('dns view: off (EGRESS_FIREWALL_DNS_VIEW=1 to enable)');
  out.push(`filtered: traffic leaving ${cfg.interface ? `through ${cfg.interface}` : 'through any interface'}; never filtered: ${[...cfg.clusterCidrs.map(cidrText), `DNS to ${nameservers.join(', ')}`].join(', ')}`);
  return out;
}

export function registerFirewall(program: Command, ctx: () => CliContext): void {
  program
    .command('firewall')
    .description('enforce EgressNetworkPolicy objects with nftables on the node; `firewall render` prints the ruleset instead')
    .argument('[action]', "'render': print the ruleset (nft syntax, --json for the batch) and touch nothing")
    .option('--policy <path>', 'policy file or folder (EGRESS_FIREWALL_POLICY)')
    .option('--sources <cidrs>', 'default sources (EGRESS_FIREWALL_SOURCES)')
    .option('--interface <name>', 'external interface (EGRESS_FIREWALL_INTERFACE)')
    .option('--cluster-cidrs <cidrs>', 'destinations never filtered (EGRESS_FIREWALL_CLUSTER_CIDRS)')
    .option('--max-rules <n>', 'rules allowed per policy (EGRESS_FIREWALL_MAX_RULES)')
    .option('--table <name>', 'nft table, family inet (EGRESS_FIREWALL_TABLE)')
    .option('--once', 'apply and exit')
    .option('--remove', "delete the firewall's table and exit")
    .option('--dns-view', 'enable the DNS view (EGRESS_FIREWALL_DNS_VIEW=1)')
    .option('--dns-port <port>', "the view's catch-all forwarder port (EGRESS_FIREWALL_DNS_PORT)")
    .option('--dns-grace <s>', 'seconds added to a learned TTL (EGRESS_FIREWALL_DNS_GRACE)')
    .option('--dns-timeout <ms>', 'bound on the set update before SERVFAIL (EGRESS_FIREWALL_DNS_TIMEOUT)')
    .option('--linear', 'naive linear chain instead of verdict maps (EGRESS_FIREWALL_LINEAR=1)')
    .option('--json', 'render: the libnftables JSON batch')
    .addHelpText('after', envHelp({ ...FIREWALL_VARS, ...SERVICE_VARS }))
    .action(async (action: string | undefined, flags: Flags) => {
      const c = ctx();
      const env = firewallEnv(c.env, flags);
      if (action === 'render') return void process.stdout.write(renderFirewall(env, !!flags.json));
      if (action !== undefined) die(`Unknown firewall action '${action}', must be render`);
      const log = c.logger(env.EGRESS_ROUTER_DEBUG ? 'debug' : 'info');
      const { kernelNft } = await import('../apply/nft.js');
      if (flags.remove) {
        const table = firewallTable(env);
        await kernelNft.run(deleteTableTx('inet', table));
        return void log.info({ table: `inet ${table}` }, 'firewall table removed');
      }
      const cfg = firewallConfig(env);
      // The runner's variables are checked before anything is applied, as every part's are.
      const service = flags.once ? undefined : serviceConfig(env);
      const { startFirewallEngine } = await import('../engines/firewall/engine.js');
      if (!service) {
        const fw = await startFirewallEngine(env, cfg, log, !!env.EGRESS_ROUTER_DEBUG, true);
        return void await fw.close();
      }
      // Signals, SIGHUP reloads, following the policy, health and systemd notify: the one runner.
      await runService({ log, env: env as NodeJS.ProcessEnv, service, start: async () => [await startFirewallEngine(env, cfg, log, !!env.EGRESS_ROUTER_DEBUG)] });
    });
}
