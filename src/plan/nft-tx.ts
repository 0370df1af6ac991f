/**
 * The nft model's second half, after knftables: named sets and maps,
 * elements (with optional timeouts), regular chains, and transactions as
 * lists of verbs (add/create/delete/flush of table/chain/set/element/rule).
 * A transaction renders to one libnftables JSON batch (applied with
 * `nft -j -f`, all or nothing) and to the same commands in nft syntax, from
 * one list, so the two can never disagree. Pure: nothing here runs nft.
 */
import type { Chain, NftFamily, Piece, Rule } from './nft.js';

export type SetKeyType = 'ipv4_addr' | 'ipv6_addr';
export type Verdict = 'accept' | 'drop' | { readonly goto: string } | { readonly jump: string };

/**
 * One element. `key` is written as nft writes it: an address, `a/len`, or
 * `a-b` (a range, interval sets only); `verdict` for verdict maps.
 */
export interface Element {
  readonly key: string;
  readonly verdict?: Verdict;
  /** Seconds; the kernel removes the element when it expires (sets with flag timeout). */
  readonly timeout?: number;
}

export interface NftSet {
  readonly name: string;
  readonly type: SetKeyType;
  /** A verdict map (`type K : verdict`) rather than a set. */
  readonly verdictMap?: boolean;
  readonly flags?: readonly ('interval' | 'timeout')[];
  readonly elements?: readonly Element[];
}

/** A chain no hook calls: reached by jump, goto or a verdict map. */
export interface RegularChain {
  readonly name: string;
  readonly rules: readonly Rule[];
}

export type AnyChain = Chain | RegularChain;

export interface FullTable {
  readonly family: NftFamily;
  readonly name: string;
  readonly sets: readonly NftSet[];
  readonly chains: readonly AnyChain[];
}

export type Verb = 'add' | 'create' | 'delete' | 'flush';

export type TxObject =
  | { readonly kind: 'table' }
  | { readonly kind: 'chain'; readonly chain: AnyChain }
  | { readonly kind: 'set'; readonly set: NftSet }
  | { readonly kind: 'element'; readonly set: string; readonly map: boolean; readonly elements: readonly Element[] }
  | { readonly kind: 'rule'; readonly chain: string; readonly rule: Rule };

export interface TxOp { readonly verb: Verb; readonly obj: TxObject }

/** A list of verbs on one table, applied as one kernel transaction. */
export class Transaction {
  readonly ops: TxOp[] = [];
  constructor(readonly family: NftFamily, readonly table: string) {}
  add(obj: TxObject): this { this.ops.push({ verb: 'add', obj }); return this; }
  create(obj: TxObject): this { this.ops.push({ verb: 'create', obj }); return this; }
  delete(obj: TxObject): this { this.ops.push({ verb: 'delete', obj }); return this; }
  flush(obj: TxObject): this { this.ops.push({ verb: 'flush', obj }); return this; }
  get size(): number { return this.ops.length; }
}

/** True when every verb is an element add/delete of single addresses (what apply/nft-netlink.ts sends over netlink). */
export function elementOnly(tx: Transaction): boolean {
  return tx.size > 0 && tx.ops.every((o) => o.obj.kind === 'element' && o.verb !== 'flush' && o.obj.elements.every((e) => !/[-/]/.test(e.key)));
}

export const isBaseChain = (c: AnyChain): c is Chain => 'hook' in c;

/**
 * Replace the table atomically: `add table` (so the delete cannot fail),
 * `delete table`, then the new contents; packets see the old table or the
 * new one, never a mix, and conntrack entries are untouched.
 */
export function replaceTableTx(t: FullTable): Transaction {
  const tx = new Transaction(t.family, t.name);
  tx.add({ kind: 'table' }).delete({ kind: 'table' }).add({ kind: 'table' });
  // Chains before sets: verdict-map elements name the chains they jump to.
  for (const c of t.chains) tx.add({ kind: 'chain', chain: { ...c, rules: [] } });
  for (const s of t.sets) tx.add({ kind: 'set', set: s });
  for (const c of t.chains) for (const r of c.rules) tx.add({ kind: 'rule', chain: c.name, rule: r });
  return tx;
}

export function deleteTableTx(family: NftFamily, name: string): Transaction {
  return new Transaction(family, name).add({ kind: 'table' }).delete({ kind: 'table' });
}

// ---- set-related expressions ---------------------------------------------------

type AddrField = { protocol: 'ip' | 'ip6'; field: 'saddr' | 'daddr' };
const addrJson = (f: AddrField) => ({ payload: { protocol: f.protocol, field: f.field } });

/** `ip daddr @set` */
export const inSet = (protocol: 'ip' | 'ip6', field: 'saddr' | 'daddr', set: string): Piece => ({
  json: { match: { op: '==', left: addrJson({ protocol, field }), right: `@${set}` } },
  text: `${protocol} ${field} @${set}`,
});

/** `ip saddr vmap @map`: one lookup decides, whatever the map's size. */
export const vmap = (protocol: 'ip' | 'ip6', field: 'saddr' | 'daddr', map: string): Piece => ({
  json: { vmap: { key: addrJson({ protocol, field }), data: `@${map}` } },
  text: `${protocol} ${field} vmap @${map}`,
});

/** `ip daddr 1.2.3.0/24` (an address, `a/len` or `a-b`). */
export const addrIs = (protocol: 'ip' | 'ip6', field: 'saddr' | 'daddr', key: string): Piece => ({
  json: { match: { op: '==', left: addrJson({ protocol, field }), right: keyJson(key) } },
  text: `${protocol} ${field} ${key}`,
});

export const verdictPiece = (v: Verdict): Piece => ({ json: verdictJson(v), text: verdictText(v) });

// ---- JSON ---------------------------------------------------------------------

function keyJson(key: string): unknown {
  const dash = key.indexOf('-');
  if (dash > 0) return { range: [key.slice(0, dash), key.slice(dash + 1)] };
  const slash = key.indexOf('/');
  if (slash > 0) return { prefix: { addr: key.slice(0, slash), len: Number(key.slice(slash + 1)) } };
  return key;
}

function verdictJson(v: Verdict): unknown {
  if (v === 'accept' || v === 'drop') return { [v]: null };
  return 'goto' in v ? { goto: { target: v.goto } } : { jump: { target: v.jump } };
}

function verdictText(v: Verdict): string {
  if (v === 'accept' || v === 'drop') return v;
  return 'goto' in v ? `goto ${v.goto}` : `jump ${v.jump}`;
}

function elementJson(e: Element): unknown {
  const key = e.timeout !== undefined ? { elem: { val: keyJson(e.key), timeout: e.timeout } } : keyJson(e.key);
  return e.verdict !== undefined ? [key, verdictJson(e.verdict)] : key;
}

function objJson(tx: Transaction, verb: Verb, o: TxObject): unknown {
  const base = { family: tx.family, table: tx.table };
  switch (o.kind) {
    case 'table': return { table: { family: tx.family, name: tx.table } };
    case 'chain': {
      const c = o.chain;
      if (verb !== 'add' && verb !== 'create') return { chain: { ...base, name: c.name } };
      return { chain: isBaseChain(c) ? { ...base, name: c.name, type: c.type, hook: c.hook, prio: c.priority, policy: 'accept' } : { ...base, name: c.name } };
    }
    case 'set': {
      const s = o.set;
      const kind = s.verdictMap ? 'map' : 'set';
      if (verb !== 'add' && verb !== 'create') return { [kind]: { ...base, name: s.name } };
      const def: Record<string, unknown> = { ...base, name: s.name, type: s.type };
      if (s.verdictMap) def.map = 'verdict';
      if (s.flags?.length) def.flags = [...s.flags];
      if (s.elements?.length) def.elem = s.elements.map(elementJson);
      return { [kind]: def };
    }
    case 'element': return { element: { ...base, name: o.set, elem: o.elements.map(elementJson) } };
    case 'rule': {
      const rule: Record<string, unknown> = { ...base, chain: o.chain, expr: o.rule.pieces.map((p) => p.json) };
      if (o.rule.comment) rule.comment = o.rule.comment;
      return { rule };
    }
  }
}

/** The libnftables JSON batch: one kernel transaction. */
export function txJson(tx: Transaction): { nftables: unknown[] } {
  return { nftables: [{ metainfo: { json_schema_version: 1 } }, ...tx.ops.map((op) => ({ [op.verb]: objJson(tx, op.verb, op.obj) }))] };
}

// ---- nft syntax ---------------------------------------------------------------

const q = (s: string) => JSON.stringify(s);
const PRIORITY_NAMES: Record<number, string> = { [-100]: 'dstnat', 0: 'filter', 100: 'srcnat', [-150]: 'mangle' };

function elementText(e: Element): string {
  return `${e.key}${e.timeout !== undefined ? ` timeout ${e.timeout}s` : ''}${e.verdict !== undefined ? ` : ${verdictText(e.verdict)}` : ''}`;
}

export function ruleText(r: Rule): string {
  return `${r.pieces.map((p) => p.text).join(' ')}${r.comment ? ` comment ${q(r.comment)}` : ''}`;
}

function setHead(s: NftSet): string[] {
  const out = [`type ${s.type}${s.verdictMap ? ' : verdict' : ''}`];
  if (s.flags?.length) out.push(`flags ${s.flags.join(',')}`);
  return out;
}

const chainHead = (c: Chain) => `type ${c.type} hook ${c.hook} priority ${PRIORITY_NAMES[c.priority] ?? c.priority}; policy accept;`;

/** One command per verb, as `nft -f` reads them. */
export function txText(tx: Transaction): string {
  const where = `${tx.family} ${tx.table}`;
  return tx.ops.map(({ verb, obj: o }) => {
    switch (o.kind) {
      case 'table': return `${verb} table ${where}`;
      case 'chain': {
        const head = (verb === 'add' || verb === 'create') && isBaseChain(o.chain) ? ` { ${chainHead(o.chain)} }` : '';
        return `${verb} chain ${where} ${o.chain.name}${head}`;
      }
      case 'set': {
        const kind = o.set.verdictMap ? 'map' : 'set';
        if (verb !== 'add' && verb !== 'create') return `${verb} ${kind} ${where} ${o.set.name}`;
        const els = o.set.elements?.length ? ` elements = { ${o.set.elements.map(elementText).join(', ')} };` : '';
        return `${verb} ${kind} ${where} ${o.set.name} { ${setHead(o.set).join('; ')};${els} }`;
      }
      case 'element': return `${verb} element ${where} ${o.set} { ${o.elements.map(elementText).join(', ')} }`;
      case 'rule': return `${verb} rule ${where} ${o.chain} ${ruleText(o.rule)}`;
    }
  }).join('\n') + '\n';
}

/** The table as `nft list table` prints it (give or take spacing); also valid `nft -f` input. */
export function fullTableText(t: FullTable): string {
  const blocks: string[][] = [];
  for (const s of t.sets) {
    const b = [`\t${s.verdictMap ? 'map' : 'set'} ${s.name} {`, ...setHead(s).map((l) => `\t\t${l}`)];
    if (s.elements?.length) b.push(`\t\telements = { ${s.elements.map(elementText).join(',\n\t\t\t     ')} }`);
    blocks.push([...b, '\t}']);
  }
  for (const c of t.chains) {
    const b = [`\tchain ${c.name} {`];
    if (isBaseChain(c)) b.push(`\t\t${chainHead(c)}`);
    for (const r of c.rules) b.push(`\t\t${ruleText(r)}`);
    blocks.push([...b, '\t}']);
  }
  return [`table ${t.family} ${t.name} {`, blocks.map((b) => b.join('\n')).join('\n\n'), '}'].join('\n') + '\n';
}
