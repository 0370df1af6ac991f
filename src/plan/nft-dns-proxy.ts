/**
 * The DNS proxy's kernel data path as an nft table (family inet: one table
 * for IPv4 and IPv6): each listener port is DNATed to the name's current
 * addresses of the client's family, spread by `numgen inc` over an anonymous
 * map (the way kube-proxy's nft mode serves a Service), and the forwarded
 * flows leave masqueraded to the egress interface's address.
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

export function dnsProxyTable(forwards: readonly KernelForward[], name = DNS_PROXY_TABLE): Table {
  const pre: Rule[] = forwards.flatMap((f) => (['ip', 'ip6'] as const).flatMap((fam) => {
    const addrs = f.addresses.filter((a) => isIPv6(a) === (fam === 'ip6'));
    return addrs.length ? [{ pieces: [nfproto(fam), dport('tcp', f.port), counter, dnatSpread(addrs, f.remotePort, fam)], comment: f.comment }] : [];
  }));
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
