/**
 * The DNS view as one object, the single thing the firewall engine starts:
 * a catch-all forwarder (to the node's nameservers) and one forwarder per
 * server the pods address, sharing one matcher and one learner that writes
 * the learned sets over netlink. The firewall gives it its table, the policy's
 * dnsName rules and which learned sets each rule has; it gets back the nft
 * rules to put in its table (redirectRules, inputGuard).
 */
import type { Logger } from '../../../observe/log.js';
import { NftElementWriter } from '../../../apply/nft-netlink.js';
import type { NftFamily, Rule } from '../../../plan/nft.js';
import { dnsViewInputGuard, dnsViewRedirectRules, type LearnedElement } from '../../../plan/nft-dns-view.js';
import { DnsViewForwarder, type DnsViewOptions } from './forwarder.js';
import { netlinkWrite, nftLearner, type ElementWrite, type NftLearner, type TargetsOf } from './learner.js';
import { compileMatcher } from './match.js';
import type { DnsViewStats } from './stats.js';
import type { Server } from './upstream.js';

export type SetsOf = (rule: string) => { readonly 4?: string; readonly 6?: string } | undefined;

export interface DnsViewConfig {
  /** The firewall's table, where the learned sets live. */
  readonly table: { readonly family: NftFamily; readonly name: string };
  /** Listen address of the forwarders ('::' takes IPv4 too); the redirect delivers to the incoming interface's address. */
  readonly host?: string;
  /** The catch-all forwarder's port, and where it sends: the node's nameservers (resolv.conf). */
  readonly port: number;
  readonly nameservers: readonly Server[];
  /** Servers the pods address (cluster DNS, the node's nameservers), each on a forwarder port of its own. */
  readonly byServer?: ReadonlyArray<{ readonly address: string; readonly port: number; readonly serverPort?: number }>;
  /** The policy's dnsName rules (names and `*.` wildcards) and each rule's learned sets. */
  readonly ruleNames: readonly string[];
  readonly setsOf: SetsOf;
  /** Instead of setsOf: elements for an address given all the rule names it matched (the firewall's learned maps). */
  readonly targetsOf?: TargetsOf;
  readonly graceSeconds?: number;
  readonly learnTimeoutMs?: number;
  readonly logger?: Logger;
  /** How learned elements reach the kernel (default: netlink on `table`). Tests give a fake. */
  readonly write?: ElementWrite;
  /** More forwarder knobs (upstream timeouts, caps). */
  readonly forwarder?: Partial<Omit<DnsViewOptions, 'host' | 'port' | 'upstreams' | 'matcher' | 'learn'>>;
}

export class DnsView {
  private setsOf: SetsOf;
  private targetsOf: TargetsOf | undefined;

  // forwarders[0]: the catch-all; forwarders[i + 1]: byServer[i].
  private constructor(private readonly c: DnsViewConfig, private readonly forwarders: DnsViewForwarder[],
    readonly learner: NftLearner, private readonly writer: NftElementWriter | undefined, setsOf: SetsOf) {
    this.setsOf = setsOf;
    this.targetsOf = c.targetsOf;
  }

  static async start(c: DnsViewConfig): Promise<DnsView> {
    const writer = c.write ? undefined : new NftElementWriter(c.table.family, c.table.name);
    let view: DnsView | undefined;
    // setsOf through the view, so a policy change reaches the learner.
    const learner = nftLearner({
      setsOf: (r) => (view ? view.setsOf(r) : c.setsOf(r)),
      targetsOf: c.targetsOf && ((rules, address, family) => (view?.targetsOf ?? c.targetsOf!)(rules, address, family)),
      graceSeconds: c.graceSeconds, write: c.write ?? netlinkWrite(writer!),
    });
    const matcher = compileMatcher(c.ruleNames);
    const forwarders: DnsViewForwarder[] = [];
    const targets: Array<[number, Server[]]> = [[c.port, [...c.nameservers]], ...(c.byServer ?? []).map((s) => [s.port, [{ address: s.address, port: s.serverPort ?? 53 }]] as [number, Server[]])];
    const start = (host: string, port: number, upstreams: Server[]) => DnsViewForwarder.start({
      ...c.forwarder, host, port, upstreams, matcher, learn: learner.learn,
      learnTimeoutMs: c.learnTimeoutMs ?? c.forwarder?.learnTimeoutMs, logger: c.logger,
    });
    try {
      for (const [port, upstreams] of targets) {
        if (c.host) { forwarders.push(await start(c.host, port, upstreams)); continue; }
        // '::' takes IPv4 too; a node without IPv6 gets 0.0.0.0.
        forwarders.push(await start('::', port, upstreams).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EAFNOSUPPORT' && e.code !== 'EADDRNOTAVAIL') throw e;
          return start('0.0.0.0', port, upstreams);
        }));
      }
    } catch (e) {
      for (const f of forwarders) f.destroy();
      writer?.close();
      throw e;
    }
    view = new DnsView(c, forwarders, learner, writer, c.setsOf);
    return view;
  }

  /** The forwarder ports as bound (catch-all first, then byServer's). */
  get ports(): number[] { return this.forwarders.map((f) => f.port); }

  /** Counters per forwarder port. */
  get stats(): Record<number, Readonly<DnsViewStats>> {
    return Object.fromEntries(this.forwarders.map((f) => [f.port, f.stats]));
  }

  /** A policy change: the next answers are matched against these rules and learned into these sets. */
  setPolicy(ruleNames: readonly string[], setsOf: SetsOf, targetsOf?: TargetsOf): void {
    this.setsOf = setsOf;
    if (targetsOf) this.targetsOf = targetsOf;
    const m = compileMatcher(ruleNames);
    for (const f of this.forwarders) f.setMatcher(m);
  }

  /** The learned sets were recreated or flushed: forget what was written. */
  resetLearned(): void { this.learner.reset(); }

  /** Live learned elements (to carry into a table replacement, or for `explain`). */
  learned(): Array<LearnedElement & { readonly remainingSeconds: number }> { return this.learner.snapshot(); }

  /** Rules for the firewall's nat prerouting chain (priority dstnat). */
  redirectRules(sources: { readonly 4: readonly string[]; readonly 6: readonly string[] }): Rule[] {
    const [catchAll, ...per] = this.ports;
    return dnsViewRedirectRules({ sources, port: catchAll!, byServer: (this.c.byServer ?? []).map((s, i) => ({ address: s.address, port: per[i]! })) });
  }

  /** Rules for the firewall's input filter chain: the forwarder ports take redirected flows only. */
  inputGuard(): Rule[] { return dnsViewInputGuard(this.ports); }

  /** Answers what is in flight, then stops. */
  async close(): Promise<void> {
    await Promise.all(this.forwarders.map((f) => f.close()));
    this.writer?.close();
  }

  destroy(): void {
    for (const f of this.forwarders) f.destroy();
    this.writer?.close();
  }
}
