/**
 * The egress firewall under the shared lifecycle (lifecycle/engine.ts): the
 * engine applies the policy and keeps names current (engines/firewall); here
 * it is followed by the shared follower (the policy file or ConfigMap folder
 * read as one digest), reloaded through the runner (RELOADING/READY, reload
 * metrics), and its rules' nft counters are published as policy decisions.
 * close() leaves the table: enforcement must not lapse across a restart.
 */
import { statSync } from 'node:fs';
import type { Env } from '../../config/env.js';
import { ConfigError } from '../../config/errors.js';
import { firewallConfig, policyDigest, readPolicyFiles, type FirewallConfig } from '../../config/firewall.js';
import { readResolvConf } from '../../dns/resolv-conf.js';
import { errorLine, type Engine, type EngineStats } from '../../lifecycle/engine.js';
import type { Logger } from '../../observe/log.js';
import { run } from '../../apply/run.js';

export async function startFirewallEngine(env: Env, cfg: FirewallConfig, log: Logger, debug: boolean, once = false): Promise<Engine> {
  const [{ FirewallEngine }, { dnsNameSource }, { conntrackFlows }, { kernelNft }] = await Promise.all([
    import('./index.js'), import('./names.js'), import('../../apply/conntrack.js'), import('../../apply/nft.js'),
  ]);
  const resolv = readResolvConf();
  const fw = new FirewallEngine({
    config: cfg, reload: () => firewallConfig(env), nameservers: resolv.nameservers, log, debug,
    nft: kernelNft, names: dnsNameSource(resolv), flows: conntrackFlows,
    // --once leaves no daemon behind to answer redirected DNS: the view's rules are left out then.
    startView: once ? undefined : async (v) => (await import('./dns-view/view.js')).DnsView.start(v),
    readLearned: async () => {
      const [{ listTableJson }, { learnedFromTable }] = await Promise.all([import('../../apply/nft.js'), import('../../plan/nft-firewall-view.js')]);
      return learnedFromTable((await listTableJson('inet', cfg.table)) ?? []);
    },
  });
  await fw.start();
  const folder = (() => { try { return statSync(cfg.path).isDirectory(); } catch { return false; } })();
  return {
    name: 'firewall',
    follows: {
      varName: 'EGRESS_FIREWALL_POLICY', path: cfg.path, text: cfg.digest,
      read: async (p) => policyDigest(readPolicyFiles(p)),
      watchDir: folder ? cfg.path : undefined,
    },
    async reconfigure() {
      let next: FirewallConfig;
      try {
        next = firewallConfig(env);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // The engine's own line, as before the runner followed the policy (operators' alerts key on it).
        log.error({ err: e.message }, 'firewall policy rejected, keeping running rules');
        return { ok: false, error: e.message };
      }
      await fw.reload(true);
      if (fw.config.digest !== next.digest) return { ok: false, error: 'the kernel refused the new policy; the running rules stay' };
      const rules = next.policies.reduce((n, p) => n + p.rules.length, 0);
      return { ok: true, summary: `${next.policies.length} policies, ${rules} rules` };
    },
    missing: () => [],
    stats: async () => ({ ...(await decisions(fw.config)), dnsView: fw.viewStats() }),
    // The rules stay: enforcement must not lapse while the daemon restarts.
    close: async () => { await fw.stop(); log.info({ table: `inet ${fw.config.table}` }, 'firewall stopped, rules left in place'); },
    destroy() {},
  };
}

/** Each rule chain's counter (p<i>_r<n>), by policy position and rule number; read with nft at scrape time. */
async function decisions(cfg: FirewallConfig): Promise<EngineStats> {
  const r = await run('nft', ['-j', 'list', 'table', 'inet', cfg.table]).catch(() => undefined);
  if (!r || r.code !== 0) return { listeners: [] };
  const out: { rule: string; action: 'allow' | 'deny'; count: number }[] = [];
  for (const o of (JSON.parse(r.stdout) as { nftables: Record<string, { chain?: string; expr?: Record<string, { packets?: number }>[] }>[] }).nftables) {
    const rule = o.rule;
    const m = rule?.chain && /^p(\d+)_r(\d+)$/.exec(rule.chain);
    if (!m) continue;
    const packets = rule.expr?.find((e) => e.counter)?.counter?.packets ?? 0;
    const p = cfg.policies[Number(m[1])];
    const fr = p?.rules.find((x) => x.n === Number(m[2]));
    if (!fr) continue;
    out.push({ rule: `${m[1]}.${m[2]}`, action: fr.type === 'Deny' ? 'deny' : 'allow', count: packets });
  }
  return { listeners: [], decisions: out };
}
