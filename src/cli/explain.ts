/**
 * `egress-router explain firewall <source> <destination>[:port]` and
 * `explain http-proxy <destination>[:port]`: would it pass, and which rule
 * decides. Resolves names as the engines would; applies nothing.
 */
import type { Command } from 'commander';
import { destinationValue } from '../config/env.js';
import { die } from '../config/errors.js';
import { firewallConfig } from '../config/firewall.js';
import { parseHttpProxyDestinations } from '../config/http-proxy.js';
import { ipFamily } from '../config/ip.js';
import { readResolvConf } from '../dns/resolv-conf.js';
import { resolveName } from '../dns/resolver.js';
import { nameRules, firewallPlanInput } from '../plan/nft-firewall.js';
import type { NameInfo } from '../plan/firewall-verdict.js';
import { explainFirewall, explainHttp } from '../plan/explain.js';
import { normaliseHost, type Host } from '../config/host.js';
import { parseAuthority } from '../engines/http-proxy/target.js';
import { compilePolicy } from '../engines/http-proxy/policy.js';
import { createResolver } from '../dns/lookup.js';
import type { CliContext } from './context.js';

function target(s: string): { host: Host; port?: number } {
  const t = parseAuthority(s);
  if (t) return t;
  const host = normaliseHost(s);
  if (!host) die(`Bad destination '${s}', must be an IP or a host name, with an optional :port`);
  return { host };
}

async function firewallLines(env: Record<string, string | undefined>, source: string, dest: string): Promise<string[]> {
  if (ipFamily(source) === 0) die(`Bad source '${source}', must be an IP address`);
  const cfg = firewallConfig(env);
  const conf = readResolvConf();
  const t = target(dest);
  const wanted = new Map<string, boolean>();
  for (const p of cfg.policies) for (const r of nameRules(p)) wanted.set(r.to.name, (wanted.get(r.to.name) ?? false) || p.ipv6);
  const info = new Map<string, NameInfo>();
  await Promise.all([...wanted].map(async ([name, ipv6]) => {
    const r = await resolveName(conf, name, { both: ipv6 }).catch((e: Error) => ({ addresses: [] as string[], ttl: undefined, error: e.message }));
    info.set(name, r);
  }));
  let addresses: readonly string[];
  if (t.host.kind === 'ip') addresses = [t.host.address];
  else {
    const r = await resolveName(conf, t.host.name, { both: true }).catch(() => ({ addresses: [] as string[] }));
    if (r.addresses.length === 0) return [`${t.host.name} does not resolve: nothing to connect to`];
    addresses = r.addresses;
  }
  const names = new Map([...info].map(([n, i]) => [n, i.addresses]));
  return explainFirewall(firewallPlanInput(cfg, conf.nameservers, names), source, addresses, t.port, info);
}

async function httpLine(env: Record<string, string | undefined>, dest: string): Promise<string> {
  const policy = compilePolicy(parseHttpProxyDestinations(destinationValue(env, 'EGRESS_HTTP_PROXY_DESTINATION')));
  const t = target(dest);
  const resolved = t.host.kind === 'name' ? await createResolver()(t.host.name).catch(() => []) : undefined;
  return explainHttp(policy, t.host, resolved);
}

export function registerExplain(program: Command, ctx: () => CliContext): void {
  program
    .command('explain')
    .description('would traffic pass, and which rule decides: `explain firewall <source-ip> <destination>[:port]`, `explain http-proxy <destination>[:port]`')
    .argument('<part>', 'firewall | http-proxy')
    .argument('<args...>', 'firewall: source IP and destination; http-proxy: destination')
    .action(async (part: string, args: string[]) => {
      const env = { ...ctx().env };
      let lines: string[];
      if (part === 'firewall' && args.length === 2) lines = await firewallLines(env, args[0]!, args[1]!);
      else if (part === 'http-proxy' && args.length === 1) lines = [await httpLine(env, args[0]!)];
      else die('usage: explain firewall <source-ip> <destination>[:port] | explain http-proxy <destination>[:port]');
      process.stdout.write(lines.join('\n') + '\n');
    });
}
