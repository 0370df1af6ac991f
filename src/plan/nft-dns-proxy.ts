/**
 * The DNS proxy's kernel data path as an nft table (family inet: one table
 * for IPv4 and IPv6): each listener port is DNATed to the name's current
 * addresses of the client's family, spread by `numgen inc` over an anonymous
 * map (the way kube-proxy's nft mode serves a Service), and the forwarded
 * flows leave masqueraded to the egress interface's address.
 * Past MAP_AFTER ports with a single address of a family, those ports share
 * one rule with a `tcp dport` map instead of a rule each: a new flow costs
 * one hash lookup instead of a walk over every rule, and a reload of 1000
 * lines is one map instead of 1000 rules (nft: 22 ms instead of 64 ms);
 * such ports have no counter of their own then (conntrack still lists flows).
 * The whole table is replaced in one transaction when an address set
 * changes; conntrack keeps established flows on the address they started on.
 * A DNAT cannot change a flow's family: a port whose target has only IPv6
 * addresses refuses IPv4 clients on this path (user space bridges families).
 */
import { isIPv6 } from 'node:net';
import { counter, dport, type Piece, type Rule, type Table } from './nft.js';

export interface KernelForward {
  readonly port: number;
  readonly remotePort: number;
  /** IPv4 and IPv6 addresses; none of a family = no rule for it, so the port refuses that family. */
  readonly addresses: readonly string[];
  readonly comment: string;
}

export const DNS_PROXY_TABLE = 'egress_router_dns_proxy';
/** Tables of this name in families we used before (ip): removed at start so two DNATs never coexist. */
export const DNS_PROXY_OLD_FAMILIES = ['ip'] as const;

type Fam = 'ip' | 'ip6';

const nfproto = (f: Fam): Piece => ({
  json: { match: { op: '==', left: { meta: { key: 'nfproto' } }, right: f === 'ip' ? 'ipv4' : 'ipv6' } },
  text: `meta nfproto ${f === 'ip' ? 'ipv4' : 'ipv6'}`,
});

/** `dnat ip[6] to numgen inc mod N map { 0 : a0, ... } :port` (a single address needs no map). */
export function dnatSpread(addresses: readonly string[], port: number, family: Fam = 'ip'): Piece {
  if (addresses.length === 1) {
    const a = family === 'ip6' ? `[${addresses[0]}]` : addresses[0];
    return { json: { dnat: { family, addr: addresses[0], port } }, text: `dnat ${family} to ${a}:${port}` };
  }
  const n = addresses.length;
  const json = {
    dnat: {
      family,
      addr: { map: { key: { numgen: { mode: 'inc', mod: n, offset: 0 } }, data: { set: addresses.map((a, i) => [i, a]) } } },
      port,
    },
  };
  const text = `dnat ${family} to numgen inc mod ${n} map { ${addresses.map((a, i) => `${i} : ${a}`).join(', ')} } :${port}`;
  return { json, text };
}

const ctStatusDnat: Piece = { json: { match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } }, text: 'ct status dnat' };
const masquerade: Piece = { json: { masquerade: null }, text: 'masquerade' };

/** Up to this many single-address ports of a family keep a rule (and a counter) each. */
export const MAP_AFTER = 16;

/** `dnat ip[6] to tcp dport map { port : address . remotePort, ... }`: one rule for many single-address ports. */
export function dnatByPort(entries: readonly { port: number; address: string; remotePort: number }[], family: Fam): Piece {
  const json = {
    dnat: {
      family,
      addr: { map: { key: { payload: { protocol: 'tcp', field: 'dport' } }, data: { set: entries.map((e) => [e.port, { concat: [e.address, e.remotePort] }]) } } },
    },
  };
  const text = `dnat ${family} to tcp dport map { ${entries.map((e) => `${e.port} : ${e.address} . ${e.remotePort}`).join(', ')} }`;
  return { json, text };
}

export function dnsProxyTable(forwards: readonly KernelForward[], name = DNS_PROXY_TABLE): Table {
  const pre: Rule[] = [];
  for (const fam of ['ip', 'ip6'] as const) {
    const lines = forwards.map((f) => ({ f, addrs: f.addresses.filter((a) => isIPv6(a) === (fam === 'ip6')) })).filter((x) => x.addrs.length > 0);
    const single = lines.filter((x) => x.addrs.length === 1);
    const mapped = single.length > MAP_AFTER ? new Set(single.map((x) => x.f)) : new Set<KernelForward>();
    for (const { f, addrs } of lines) {
      if (!mapped.has(f)) pre.push({ pieces: [nfproto(fam), dport('tcp', f.port), counter, dnatSpread(addrs, f.remotePort, fam)], comment: f.comment });
    }
    if (mapped.size > 0) {
      const entries = single.map((x) => ({ port: x.f.port, address: x.addrs[0]!, remotePort: x.f.remotePort }));
      pre.push({ pieces: [nfproto(fam), dnatByPort(entries, fam)], comment: `${entries.length} single-address ports` });
    }
  }
  return {
    family: 'inet',
    name,
    chains: [
      { name: 'prerouting', type: 'nat', hook: 'prerouting', priority: -100, rules: pre },
      // Replies must come back to this namespace to be un-NATed for the client.
      { name: 'postrouting', type: 'nat', hook: 'postrouting', priority: 100, rules: [{ pieces: [ctStatusDnat, masquerade] }] },
    ],
  };
}

/** True when the table DNATs to some IPv6 address (the namespace must then forward IPv6). */
export const hasIpv6 = (forwards: readonly KernelForward[]) => forwards.some((f) => f.addresses.some((a) => isIPv6(a)));
