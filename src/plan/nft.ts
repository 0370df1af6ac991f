/**
 * Our nftables shim: a tiny model of tables, chains and rules in which every
 * piece of a rule carries both its libnftables JSON and its nft-syntax text,
 * so `render` and `render --json` can never disagree.
 * Pure: nothing here runs nft (see apply/nft.ts).
 */
export type NftFamily = 'ip' | 'ip6' | 'inet';

/** One expression or statement of a rule. */
export interface Piece {
  readonly json: unknown;
  readonly text: string;
}

export interface Rule {
  readonly pieces: readonly Piece[];
  readonly comment?: string;
}

export interface Chain {
  readonly name: string;
  readonly type: 'nat' | 'filter' | 'route';
  readonly hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';
  readonly priority: number;
  readonly rules: readonly Rule[];
}

export interface Table {
  readonly family: NftFamily;
  readonly name: string;
  readonly chains: readonly Chain[];
}

const PRIORITY_NAMES: Record<number, string> = { [-100]: 'dstnat', 0: 'filter', 100: 'srcnat', [-150]: 'mangle' };

const q = (s: string) => JSON.stringify(s);

// ---- expressions -----------------------------------------------------------

export const iifname = (name: string): Piece => metaMatch('iifname', '==', name, `iifname ${q(name)}`);
export const oifname = (name: string): Piece => metaMatch('oifname', '==', name, `oifname ${q(name)}`);
export const l4proto = (p: 'tcp' | 'udp'): Piece => metaMatch('l4proto', '==', p, `meta l4proto ${p}`);

function metaMatch(key: string, op: string, right: unknown, text: string): Piece {
  return { json: { match: { op, left: { meta: { key } }, right } }, text };
}

export const dport = (proto: 'tcp' | 'udp', port: number): Piece => ({
  json: { match: { op: '==', left: { payload: { protocol: proto, field: 'dport' } }, right: port } },
  text: `${proto} dport ${port}`,
});

export const ctState = (states: readonly string[]): Piece => ({
  json: { match: { op: 'in', left: { ct: { key: 'state' } }, right: states.length === 1 ? states[0] : { set: [...states] } } },
  text: `ct state ${states.join(',')}`,
});

export const ctDirectionOriginal: Piece = {
  json: { match: { op: '==', left: { ct: { key: 'direction' } }, right: 'original' } },
  text: 'ct direction original',
};

export const ctMarkIs = (mark: number, op: '==' | '!=' = '=='): Piece => ({
  json: { match: { op, left: { ct: { key: 'mark' } }, right: mark } },
  text: `ct mark ${op === '!=' ? '!= ' : ''}${hex(mark)}`,
});

export const fibDaddrLocal: Piece = {
  json: { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } },
  text: 'fib daddr type local',
};

// ---- statements ------------------------------------------------------------

export const accept: Piece = { json: { accept: null }, text: 'accept' };
export const drop: Piece = { json: { drop: null }, text: 'drop' };
export const counter: Piece = { json: { counter: null }, text: 'counter' };

export const setMetaMark = (mark: number): Piece => ({
  json: { mangle: { key: { meta: { key: 'mark' } }, value: mark } },
  text: `meta mark set ${hex(mark)}`,
});

export const setCtMark = (mark: number): Piece => ({
  json: { mangle: { key: { ct: { key: 'mark' } }, value: mark } },
  text: `ct mark set ${hex(mark)}`,
});

export function dnat(family: 4 | 6, addr: string, port?: number): Piece {
  const json: Record<string, unknown> = { addr };
  if (port !== undefined) json.port = port;
  const a = family === 6 && port !== undefined ? `[${addr}]` : addr;
  return { json: { dnat: json }, text: `dnat to ${a}${port !== undefined ? `:${port}` : ''}` };
}

export const snat = (addr: string): Piece => ({ json: { snat: { addr } }, text: `snat to ${addr}` });

export const rejectTcpReset: Piece = { json: { reject: { type: 'tcp reset' } }, text: 'reject with tcp reset' };

export function rejectPortUnreachable(family: 4 | 6): Piece {
  return family === 4
    ? { json: { reject: { type: 'icmp', expr: 'port-unreachable' } }, text: 'reject with icmp type port-unreachable' }
    : { json: { reject: { type: 'icmpv6', expr: 'port-unreachable' } }, text: 'reject with icmpv6 type port-unreachable' };
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

// ---- rendering -------------------------------------------------------------

export function ruleCount(t: Table): number {
  return t.chains.reduce((n, c) => n + c.rules.length, 0);
}

/** nft syntax, as `nft list table` would print it (give or take spacing). */
export function toText(t: Table): string {
  const lines = [`table ${t.family} ${t.name} {`];
  t.chains.forEach((c, i) => {
    if (i > 0) lines.push('');
    const prio = PRIORITY_NAMES[c.priority] ?? String(c.priority);
    lines.push(`\tchain ${c.name} {`, `\t\ttype ${c.type} hook ${c.hook} priority ${prio}; policy accept;`);
    for (const r of c.rules) {
      const comment = r.comment ? ` comment ${q(r.comment)}` : '';
      lines.push(`\t\t${r.pieces.map((p) => p.text).join(' ')}${comment}`);
    }
    lines.push('\t}');
  });
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * The libnftables JSON batch that replaces the table atomically:
 * `add table` (so the delete cannot fail), `delete table`, then the new
 * contents. nft applies a batch as one transaction, so packets see either
 * the old table or the new one; conntrack keeps established flows' NAT.
 */
export function toReplaceBatch(t: Table): { nftables: unknown[] } {
  const table = { family: t.family, name: t.name };
  const cmds: unknown[] = [
    { metainfo: { json_schema_version: 1 } },
    { add: { table } },
    { delete: { table } },
    { add: { table } },
  ];
  for (const c of t.chains) {
    cmds.push({
      add: { chain: { family: t.family, table: t.name, name: c.name, type: c.type, hook: c.hook, prio: c.priority, policy: 'accept' } },
    });
  }
  for (const c of t.chains) {
    for (const r of c.rules) {
      const rule: Record<string, unknown> = { family: t.family, table: t.name, chain: c.name, expr: r.pieces.map((p) => p.json) };
      if (r.comment) rule.comment = r.comment;
      cmds.push({ add: { rule } });
    }
  }
  return { nftables: cmds };
}

/** The batch that removes the table (used by `egress-router teardown`). */
export function toDeleteBatch(family: NftFamily, name: string): { nftables: unknown[] } {
  const table = { family, name };
  return { nftables: [{ add: { table } }, { delete: { table } }] };
}

// ---- firewall pieces (issue 10) ----------------------------------------------

export const oifnameNot = (name: string): Piece => metaMatch('oifname', '!=', name, `oifname != ${q(name)}`);

/** `meta l4proto { tcp, udp }` */
export const l4protoIn = (ps: readonly ('tcp' | 'udp')[]): Piece =>
  metaMatch('l4proto', '==', { set: [...ps] }, `meta l4proto { ${ps.join(', ')} }`);

/** Transport destination port, whatever the transport (`th dport 53`). */
export const thDport = (port: number): Piece => ({
  json: { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: port } },
  text: `th dport ${port}`,
});

/** ICMP administratively prohibited in the packet's own family (icmp or icmpv6): inet tables. */
export const rejectAdminProhibited: Piece = {
  json: { reject: { type: 'icmpx', expr: 'admin-prohibited' } },
  text: 'reject with icmpx admin-prohibited',
};

/** `ct mark & bits == 0`: none of these conntrack mark bits is set (other bits belong to others). */
export const ctMarkBitsClear = (bits: number): Piece => ({
  json: { match: { op: '==', left: { '&': [{ ct: { key: 'mark' } }, bits] }, right: 0 } },
  text: `ct mark & ${hex(bits)} == ${hex(0)}`,
});

export * from './nft-tx.js';
