/**
 * The egress firewall engine: applies the policies as one nft table, keeps
 * the dnsName rules' addresses current with small element transactions, and
 * applies policy changes as one replacement transaction. Every change goes
 * through one queue, so transactions never interleave. Stopping leaves the
 * table in place: enforcement must not lapse across a restart.
 */
import { ConfigError } from '../../config/errors.js';
import type { FirewallConfig } from '../../config/firewall.js';
import type { Logger } from '../../observe/log.js';
import type { NftBackend } from '../../apply/nft.js';
import { replaceTableTx, fullTableText, type FullTable } from '../../plan/nft.js';
import { countElements, firewallPlanInput, firewallTable, linearFirewallTable, type FirewallPlanInput } from '../../plan/nft-firewall.js';
import { nameUpdateTx, policyNames } from '../../plan/nft-firewall-names.js';
import { NameBook, type NameSourceFactory } from './names.js';
import { cutDenied, type FlowTable } from './cut.js';
import { FirewallView, type ViewStarter } from './view.js';
import type { LearnedRecord } from '../../plan/nft-firewall-view.js';

export interface FirewallEngineOptions {
  readonly config: FirewallConfig;
  /** Reads and validates the policy again; throws ConfigError when it is invalid. */
  readonly reload: () => FirewallConfig;
  readonly nameservers: readonly string[];
  readonly log: Logger;
  readonly debug?: boolean;
  readonly nft: NftBackend;
  readonly names: NameSourceFactory;
  readonly flows?: FlowTable;
  /** How long a new name's first lookup may hold an apply back (ms). */
  readonly firstLookupWaitMs?: number;
  /** Starts the DNS view when the config enables it (DnsView.start; tests give a fake). Without it the view's rules are left out. */
  readonly startView?: ViewStarter;
  /** Learned elements of the table a previous daemon left (carried into the first table). */
  readonly readLearned?: () => Promise<readonly LearnedRecord[]>;
}

export class FirewallEngine {
  private cfg: FirewallConfig;
  private names = new Map<string, readonly string[]>();
  private applied = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly book: NameBook;
  private view: FirewallView | undefined;
  /** Learned elements a previous daemon left, for the first table only. */
  private inherited: readonly LearnedRecord[] = [];

  constructor(private readonly o: FirewallEngineOptions) {
    this.cfg = o.config;
    this.book = new NameBook(o.names, o.log, (name, addresses) => void this.serial(() => this.updateName(name, addresses)));
  }

  get config(): FirewallConfig { return this.cfg; }

  /** The plan's input as the table has it now. */
  input(): FirewallPlanInput {
    const i = firewallPlanInput(this.cfg, this.o.nameservers, this.names);
    // The view's rules only while a view serves its ports (not with --once).
    return this.view && this.cfg.dnsView ? i : { ...i, view: undefined };
  }

  /** The DNS view's counters (plain numbers), or undefined without a view. */
  viewStats(): Record<string, number> | undefined { return this.view?.stats(); }

  table(): FullTable {
    return (this.cfg.linear ? linearFirewallTable : firewallTable)(this.input());
  }

  /** First apply: names get their first lookup (bounded), then the whole table in one transaction. */
  async start(): Promise<void> {
    await this.serial(async () => {
      // Before the table: the redirect must find the forwarders listening.
      if (this.cfg.dnsView && this.o.startView) {
        this.view = await FirewallView.start(this.o.startView, this.cfg, this.o.nameservers, () => this.input(), this.o.log);
        // A restart must not drop what pods were told: the previous daemon's learned elements go into the first table.
        this.inherited = await (this.o.readLearned?.() ?? Promise.resolve([])).catch((e: Error) => {
          this.o.log.warn({ err: e.message }, 'learned elements of the running table not read');
          return [];
        });
      }
      this.names = await this.book.sync(policyNames(this.cfg), this.o.firstLookupWaitMs ?? 2000);
      await this.applyAll();
    });
    this.o.log.info({ table: `inet ${this.cfg.table}` }, 'firewall ready');
  }

  /**
   * The policy file changed (or SIGHUP): a valid policy replaces the table in
   * one transaction, then established flows it now denies are cut; an invalid
   * one is logged and the running rules stay. Unchanged files are a no-op
   * unless `force`.
   */
  reload(force = false): Promise<void> {
    return this.serial(async () => {
      let next: FirewallConfig;
      try {
        next = this.o.reload();
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        this.o.log.error({ err: e.message }, 'firewall policy rejected, keeping running rules');
        return;
      }
      if (!force && next.digest === this.cfg.digest) return;
      const before = this.input();
      const prev = this.cfg;
      this.cfg = next;
      this.view?.setPolicy(next);
      this.names = await this.book.sync(policyNames(next), this.o.firstLookupWaitMs ?? 2000);
      try {
        await this.applyAll();
      } catch (e) {
        // The kernel refused it: the running table is the old one, and so is our model of it.
        this.o.log.error({ err: (e as Error).message }, 'firewall policy rejected, keeping running rules');
        this.cfg = prev;
        this.view?.setPolicy(prev);
        this.names = await this.book.sync(policyNames(prev), 0);
        return;
      }
      if (this.o.flows) await cutDenied(this.o.flows, before, this.input(), this.o.log);
    });
  }

  /** Stops following names and closes the DNS view (answers in flight go out); the rules stay. */
  stop(): Promise<void> {
    this.book.stop();
    const v = this.view;
    this.view = undefined;
    return v ? v.close() : Promise.resolve();
  }

  /** Resolves when everything queued so far is done (tests, --once). */
  idle(): Promise<void> { return this.serial(async () => {}); }

  private serial(f: () => Promise<void>): Promise<void> {
    const run = this.queue.then(f);
    this.queue = run.catch((e) => this.o.log.error({ err: (e as Error).message }, 'firewall update failed'));
    return run;
  }

  private async applyAll(): Promise<void> {
    const t0 = performance.now();
    // Learned addresses live on in the new table (re-decided under its policy), in the same transaction.
    const learned = this.view && this.cfg.dnsView ? [...this.inherited, ...this.view.records()] : undefined;
    this.inherited = [];
    const input = learned ? { ...this.input(), view: { ...this.input().view!, learned } } : this.input();
    const table = (this.cfg.linear ? linearFirewallTable : firewallTable)(input);
    await this.o.nft.run(replaceTableTx(table));
    this.view?.replaced();
    this.applied = true;
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    const rules = this.cfg.policies.reduce((n, p) => n + p.rules.length, 0);
    this.o.log.info({ policies: this.cfg.policies.length, rules, sets: table.sets.length, elements: countElements(table), ms }, 'firewall policy applied');
    for (const c of this.cfg.conflicts) this.o.log.error({ namespace: c.namespace }, c.message);
    if (this.o.debug) this.o.log.debug({ ruleset: fullTableText(table) }, 'firewall ruleset');
  }

  /** A name's addresses changed: its elements only, in one transaction; on failure, the whole table again. */
  private async updateName(name: string, addresses: readonly string[]): Promise<void> {
    if (!this.names.has(name)) return; // no longer in any policy
    if (!this.applied) { this.names.set(name, addresses); return; }
    const t0 = performance.now();
    const u = nameUpdateTx(this.input(), name, addresses, this.cfg.linear);
    if (this.view && this.cfg.dnsView) {
      const after = new Map(this.names).set(name, addresses);
      this.view.redecide(this.input(), { ...this.input(), names: after }, [...u.added, ...u.removed], u.tx);
    }
    if (u.tx.size === 0) { this.names.set(name, addresses); return; }
    try {
      await this.o.nft.run(u.tx);
      this.names.set(name, addresses);
    } catch (e) {
      this.o.log.error({ name, err: (e as Error).message }, 'name update failed, replacing the table');
      this.names.set(name, addresses);
      await this.applyAll();
    }
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    this.o.log.info({ name, added: u.added, removed: u.removed, ms }, 'name updated');
  }
}
