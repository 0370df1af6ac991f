/**
 * The nft pieces the firewall needs for its DNS view (issue 11), pure, as
 * plain libnftables JSON plus nft text (the Piece model of nft.ts), for the
 * firewall to put in its own `inet` table:
 * - the redirect of its sources' DNS (UDP and TCP 53, to any address) to the
 *   forwarder, in a `type nat hook prerouting priority dstnat` chain;
 * - the learned-address sets (`flags timeout`) and the element commands that
 *   put a learn() call's addresses in them with timeout = TTL + grace.
 */
import type { NftFamily, Piece, Rule } from './nft.js';
import type { Verdict } from './nft-tx.js';

export type Family = 4 | 6;

export interface DnsViewRedirect {
  /** Source CIDRs (the policy's pods), split by family. */
  readonly sources: { readonly 4: readonly string[]; readonly 6: readonly string[] };
  /** The forwarder's port for queries to any other server (it forwards to the node's nameservers). */
  readonly port: number;
  /**
   * Servers the pods address (e.g. the cluster DNS service) each sent to a
   * forwarder port of its own that forwards to that server: how the view
   * keeps "the server the pod addressed" without reading conntrack per query.
   */
  readonly byServer?: ReadonlyArray<{ readonly address: string; readonly port: number }>;
}

const isV6 = (a: string) => a.includes(':');

function prefixJson(cidr: string): unknown {
  const [addr, len] = cidr.split('/') as [string, string | undefined];
  const full = isV6(addr) ? 128 : 32;
  return len === undefined || Number(len) === full ? addr : { prefix: { addr, len: Number(len) } };
}

export function addrMatch(field: 'saddr' | 'daddr', family: Family, cidrs: readonly string[]): Piece {
  const proto = family === 4 ? 'ip' : 'ip6';
  const right = cidrs.length === 1 ? prefixJson(cidrs[0]!) : { set: cidrs.map(prefixJson) };
  const text = cidrs.length === 1 ? cidrs[0]! : `{ ${cidrs.join(', ')} }`;
  return { json: { match: { op: '==', left: { payload: { protocol: proto, field } }, right } }, text: `${proto} ${field} ${text}` };
}

export const l4protoTcpUdp: Piece = {
  json: { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: { set: ['tcp', 'udp'] } } },
  text: 'meta l4proto { tcp, udp }',
};

export const thDport = (port: number): Piece => ({
  json: { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right: port } },
  text: `th dport ${port}`,
});

/** Local delivery to the incoming interface's primary address, on `port`. */
export const redirectTo = (port: number): Piece => ({ json: { redirect: { port } }, text: `redirect to :${port}` });

const counter: Piece = { json: { counter: null }, text: 'counter' };

/**
 * Rules for the firewall's nat prerouting chain: the sources' DNS, UDP and
 * TCP, to the forwarder. Per-server rules first (the first match wins), then
 * the catch-all.
 */
export function dnsViewRedirectRules(r: DnsViewRedirect): Rule[] {
  const rules: Rule[] = [];
  for (const family of [4, 6] as const) {
    const src = r.sources[family];
    if (src.length === 0) continue;
    for (const s of r.byServer ?? []) {
      if ((isV6(s.address) ? 6 : 4) !== family) continue;
      rules.push({ pieces: [addrMatch('saddr', family, src), addrMatch('daddr', family, [s.address]), l4protoTcpUdp, thDport(53), counter, redirectTo(s.port)],
        comment: `dns view: ${s.address}` });
    }
    rules.push({ pieces: [addrMatch('saddr', family, src), l4protoTcpUdp, thDport(53), counter, redirectTo(r.port)], comment: 'dns view' });
  }
  return rules;
}

// A redirect is a DNAT: conntrack marks the flow's status with it.
// `!=` would compare the whole status word; `!` tests the bit (nft prints it so).
const ctStatusNotDnat: Piece = { json: { match: { op: '!', left: { ct: { key: 'status' } }, right: 'dnat' } }, text: 'ct status ! dnat' };
const drop: Piece = { json: { drop: null }, text: 'drop' };

function thDports(ports: readonly number[]): Piece {
  const right = ports.length === 1 ? ports[0] : { set: [...ports] };
  return { json: { match: { op: '==', left: { payload: { protocol: 'th', field: 'dport' } }, right } }, text: `th dport ${ports.length === 1 ? ports[0] : `{ ${ports.join(', ')} }`}` };
}

/**
 * Rules for a `type filter hook input priority filter` chain: the forwarder
 * ports take only what the redirect brought, so the forwarder is never an
 * open resolver on the node's other addresses.
 */
export function dnsViewInputGuard(ports: readonly number[]): Rule[] {
  if (ports.length === 0) return [];
  const p = [...new Set(ports)].sort((a, b) => a - b);
  return [{ pieces: [l4protoTcpUdp, thDports(p), ctStatusNotDnat, counter, drop], comment: 'dns view: redirected queries only' }];
}

export interface SetRef { readonly family: NftFamily; readonly table: string }

/** `add set` for a learned-address set: typed by family, `flags timeout`, bounded size. */
export function learnedSet(t: SetRef, name: string, family: Family, size = 65536): { json: unknown; text: string } {
  const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  return {
    json: { add: { set: { family: t.family, table: t.table, name, type, flags: ['timeout'], size } } },
    text: `add set ${t.family} ${t.table} ${name} { type ${type}; flags timeout; size ${size}; }`,
  };
}

/** An element the view learns: an address in a set, or in a verdict map with the rule deciding it. */
export interface LearnedElement { readonly set: string; readonly address: string; readonly verdict?: Verdict }

/**
 * Commands that (re)set `elements` with a timeout of `timeoutSeconds`, as one
 * transaction: add, delete, add. The first add makes the delete safe for an
 * address not there yet; the delete and the second add set the new timeout
 * also on kernels where adding an existing element leaves its timeout as it
 * was. Packets see the element before or after, never without it.
 */
export function learnElements(t: SetRef, elements: readonly LearnedElement[], timeoutSeconds: number): { json: unknown[]; text: string } {
  const timeout = Math.max(1, Math.ceil(timeoutSeconds));
  const bySet = new Map<string, LearnedElement[]>();
  for (const e of elements) {
    const l = bySet.get(e.set);
    if (l) { if (!l.some((x) => x.address === e.address)) l.push(e); } else bySet.set(e.set, [e]);
  }
  const json: unknown[] = [];
  const text: string[] = [];
  const vJson = (v: Verdict) => (typeof v === 'string' ? { [v]: null } : 'goto' in v ? { goto: { target: v.goto } } : { jump: { target: v.jump } });
  const vText = (v: Verdict) => (typeof v === 'string' ? v : 'goto' in v ? `goto ${v.goto}` : `jump ${v.jump}`);
  for (const [set, es] of bySet) {
    const addrs = es.map((e) => e.address);
    const ref = { family: t.family, table: t.table, name: set };
    const timed = es.map((e) => (e.verdict ? [{ elem: { val: e.address, timeout } }, vJson(e.verdict)] : { elem: { val: e.address, timeout } }));
    json.push({ add: { element: { ...ref, elem: timed } } }, { delete: { element: { ...ref, elem: addrs } } }, { add: { element: { ...ref, elem: timed } } });
    const withT = `{ ${es.map((e) => `${e.address} timeout ${timeout}s${e.verdict ? ` : ${vText(e.verdict)}` : ''}`).join(', ')} }`;
    const at = `${t.family} ${t.table} ${set}`;
    text.push(`add element ${at} ${withT}`, `delete element ${at} { ${addrs.join(', ')} }`, `add element ${at} ${withT}`);
  }
  // One line, commands joined by ';': nft applies a line as one transaction.
  return { json, text: text.join('; ') };
}

