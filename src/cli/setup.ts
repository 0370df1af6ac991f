/**
 * The router's set-up, shared by `run` (the image entrypoint) and `daemon`:
 * the network plan applied, then (redirect modes) the ruleset. Wiring only.
 */
import { spawnSync } from 'node:child_process';
import type { RouterConfig } from '../config/router.js';
import type { Logger } from '../observe/log.js';
import { networkPlan } from '../plan/network.js';

export interface SetUp {
  /** Set when macvlan0 was created into another namespace: the rest ran there (exit code set). */
  readonly movedTo?: string;
  readonly guard: boolean;
  /** Cancels the pending second announcement. */
  stop(): void;
}

export async function setUpRouter(cfg: RouterConfig, log: Logger, exiting: boolean): Promise<SetUp> {
  const [{ applyNetwork }, { applyRedirect, checkHostIpv6Forwarding, needsForwardGuard }] = await Promise.all([
    import('../apply/network.js'), import('../engines/redirect/index.js'),
  ]);
  if (cfg.redirect) await checkHostIpv6Forwarding(cfg.redirect, cfg.options);
  const guard = cfg.redirect ? await needsForwardGuard(cfg.redirect, cfg.options) : false;
  const ops = networkPlan({ source: cfg.source, gateway: cfg.gateway, mode: cfg.mode, options: cfg.options });
  const net = await applyNetwork(ops, log, { exiting });
  if (net.movedTo) {
    reexecIn(net.movedTo);
    return { movedTo: net.movedTo, guard, stop: net.stop };
  }
  if (cfg.redirect) await applyRedirect(cfg.redirect, cfg.options, log, guard);
  log.info({ mode: cfg.mode }, 'set-up complete');
  return { guard, stop: net.stop };
}

/** macvlan0 was created into another namespace: continue set-up there. */
function reexecIn(netns: string): void {
  const env = { ...process.env, EGRESS_MACVLAN_NETNS: '' };
  const r = spawnSync('nsenter', [`--net=${netns}`, '--', process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env });
  process.exitCode = r.status ?? 1;
}
