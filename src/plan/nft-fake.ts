/**
 * An in-memory nftables for root-free tests (after knftables' fake): applies
 * transactions all or nothing with the kernel's main refusals (deleting what
 * does not exist, elements of a missing set, `create` of what exists), keeps
 * what it holds for assertions, and records every transaction.
 */
import type { Element, Transaction, TxOp } from './nft-tx.js';
import type { Rule } from './nft.js';

export interface FakeTable {
  sets: Map<string, Map<string, Element>>;
  chains: Map<string, Rule[]>;
}

export class FakeNft {
  readonly tables = new Map<string, FakeTable>();
  readonly log: Transaction[] = [];
  /** Set to make the next run() fail, as nft would on a kernel error. */
  failNext: string | undefined;

  async run(tx: Transaction): Promise<void> {
    this.log.push(tx);
    if (this.failNext) { const m = this.failNext; this.failNext = undefined; throw new Error(m); }
    const key = `${tx.family} ${tx.table}`;
    const next = new Map(this.tables);
    const cur = next.get(key);
    let t: FakeTable | undefined = cur && { sets: new Map([...cur.sets].map(([k, v]) => [k, new Map(v)])), chains: new Map(cur.chains) };
    for (const op of tx.ops) t = apply(t, op, key);
    if (t) next.set(key, t); else next.delete(key);
    this.tables.clear();
    for (const [k, v] of next) this.tables.set(k, v);
  }

  /** The keys of a set's elements (sorted), or undefined when the set does not exist. */
  elements(table: string, set: string, family = 'inet'): string[] | undefined {
    const s = this.tables.get(`${family} ${table}`)?.sets.get(set);
    return s && [...s.keys()].sort();
  }
}

function apply(t: FakeTable | undefined, op: TxOp, key: string): FakeTable | undefined {
  const o = op.obj;
  const fail = (what: string): never => { throw new Error(`fake nft: ${op.verb} ${o.kind} ${what} in ${key}`); };
  if (o.kind === 'table') {
    if (op.verb === 'delete') return t ? undefined : fail('(no such table)');
    if (op.verb === 'create' && t) fail('(exists)');
    return t ?? { sets: new Map(), chains: new Map() };
  }
  if (!t) return fail('(no such table)');
  if (o.kind === 'set') {
    if (op.verb === 'delete') { if (!t.sets.delete(o.set.name)) fail(o.set.name); return t; }
    if (op.verb === 'flush') { if (!t.sets.has(o.set.name)) fail(o.set.name); t.sets.set(o.set.name, new Map()); return t; }
    if (op.verb === 'create' && t.sets.has(o.set.name)) fail(o.set.name);
    const s = t.sets.get(o.set.name) ?? new Map<string, Element>();
    for (const e of o.set.elements ?? []) s.set(e.key, e);
    t.sets.set(o.set.name, s);
  } else if (o.kind === 'element') {
    const s = t.sets.get(o.set) ?? fail(`(no set ${o.set})`);
    for (const e of o.elements) {
      if (op.verb === 'delete') { if (!s.delete(e.key)) fail(`${e.key} (not in ${o.set})`); }
      else if (op.verb === 'create' && s.has(e.key)) fail(`${e.key} (exists in ${o.set})`);
      else s.set(e.key, e);
    }
  } else if (o.kind === 'chain') {
    if (op.verb === 'delete') { if (!t.chains.delete(o.chain.name)) fail(o.chain.name); return t; }
    if (op.verb === 'flush') { t.chains.set(o.chain.name, []); return t; }
    if (!t.chains.has(o.chain.name)) t.chains.set(o.chain.name, []);
  } else {
    const rules = t.chains.get(o.chain) ?? fail(`(no chain ${o.chain})`);
    t.chains.set(o.chain, [...rules, o.rule]);
  }
  return t;
}
