/**
 * Redirect mode: the kernel does the forwarding. This module only turns the
 * contract into the nft table and applies it atomically in the router's own
 * table, then (legacy mode) stays alive until SIGTERM.
 */
import type { RedirectConfig } from '../../config/redirect.js';
import type { Logger } from '../../observe/log.js';
import type { RouterOptions } from '../../config/options.js';
import { FORWARD_GUARD_CHAIN, redirectTable } from '../../plan/redirect.js';
import { ruleCount, toReplaceBatch } from '../../plan/nft.js';
import { applyNft, nftHas } from '../../apply/nft.js';
import { getSysctl } from '../../apply/sysctl.js';

/** `forwardGuard` must be decided (needsForwardGuard) before set-up turns forwarding on. */
export async function applyRedirect(config: RedirectConfig, options: RouterOptions, log: Logger, forwardGuard = false): Promise<void> {
  const table = redirectTable({ config, options, forwardGuard });
  await applyNft(toReplaceBatch(table));
  log.info({ step: 'ruleset', table: `${table.family} ${table.name}`, rules: ruleCount(table), chains: table.chains.map((c) => c.name), forwardGuard }, 'ruleset applied');
}

/**
 * On a host, guard forwarding only if it was off on the client interface
 * before we turned it on (or we guarded it on an earlier run): a host that
 * already routed for others keeps doing so.
 */
export async function needsForwardGuard(config: RedirectConfig, options: RouterOptions): Promise<boolean> {
  if (options.placement !== 'host') return false;
  const fam = config.source.family === 4 ? 'ip' : 'ip6';
  if (await nftHas(fam, options.table, FORWARD_GUARD_CHAIN)) return true;
  const ipv = config.source.family === 4 ? 'ipv4' : 'ipv6';
  return (await getSysctl(`net/${ipv}/conf/${options.clientInterface}/forwarding`)) !== '1';
}

/**
 * IPv6 forwards only when net.ipv6.conf.all.forwarding is on (per-interface
 * switches do not suffice), and turning that on changes the whole host (it
 * stops accepting router advertisements). On a host we refuse to flip it:
 * say so before touching anything.
 */
export async function checkHostIpv6Forwarding(config: RedirectConfig, options: RouterOptions): Promise<void> {
  if (options.placement !== 'host' || config.source.family !== 6) return;
  if ((await getSysctl('net/ipv6/conf/all/forwarding')) !== '1') {
    throw new Error('IPv6 redirect in host placement needs net.ipv6.conf.all.forwarding=1 on the host (with accept_ra=2 where router advertisements are used); egress-router does not change host-wide settings');
  }
}
