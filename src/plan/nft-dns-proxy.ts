/**
 * The DNS proxy's kernel data path as an nft table: each listener port is
 * DNATed to the name's current addresses, spread by `numgen inc` over an
 * anonymous map (the way kube-proxy's nft mode serves a Service), and the
 * forwarded flows leave masqueraded to the egress interface's address.
 * The whole table is replaced in one transaction when an address set
 * changes; conntrack keeps established flows on the address they started on.
 */
import { counter, dport, type Piece, type Rule, type Table } from './nft.js';

export interface KernelForward {
  readonly port: number;
  readonly remotePort: number;
  /** IPv4 addresses; empty = no rule, so the port refuses (nothing listens). */
  readonly addresses: readonly string[];
  readonly comment: string;
}

export const DNS_PROXY_TABLE = 'egress_router_dns_proxy';

/** `dnat to numgen inc mod N map { 0 : a0, ... } :port` (a single address needs no map). */
export function dnatSpread(addresses: readonly string[], port: number): Piece {
  if (addresses.length === 1) return { json: { dnat: { addr: addresses[0], port } }, text: `dnat to ${addresses[0]}:${port}` };
  const n = addresses.length;
  const json = {
    dnat: {
      addr: { map: { key: { numgen: { mode: 'inc', mod: n, offset: 0 } }, data: { set: addresses.map((a, i) => [i, a]) } } },
      port,
    },
  };
  const text = `dnat to numgen inc mod ${n} map { ${addresses.map((a, i) => `${i} : ${a}`).join(', ')} } :${port}`;
  return { json, text };
}

const ctStatusDnat: Piece = { json: { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } }, text: 'ct status dnat' };
const masquerade: Piece = { json: { masquerade: null }, text: 'masquerade' };

export function dnsProxyTable(forwards: readonly KernelForward[], name = DNS_PROXY_TABLE): Table {
  const pre: Rule[] = forwards
    .filter((f) => f.addresses.length > 0)
    .map((f) => ({ pieces: [dport('tcp', f.port), counter, dnatSpread(f.addresses, f.remotePort)], comment: f.comment }));
  return {
    family: 'ip',
    name,
    chains: [
      { name: 'prerouting', type: 'nat', hook: 'prerouting', priority: -100, rules: pre },
      // Replies must come back to this namespace to be un-NATed for the client.
      { name: 'postrouting', type: 'nat', hook: 'postrouting', priority: 100, rules: [{ pieces: [ctStatusDnat, masquerade] }] },
    ],
  };
}
