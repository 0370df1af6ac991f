/**
 * The network set-up as a list of idempotent "ensure" operations. Pure: the
 * apply layer (apply/network.ts) carries them out with netlink and /proc/sys.
 *
 * Pod placement is the OpenShift script: address on macvlan0, route to the
 * gateway, default route via the gateway, gratuitous ARP now and 2 s later.
 * Host placement never touches the main table: a table of our own, chosen by
 * source address and by the mark of the flows we DNAT.
 */
import type { Mode } from '../config/mode.js';
import type { Source } from '../config/redirect.js';
import { cidrContains, networkOf } from '../config/ip.js';
import type { RouterOptions } from '../config/options.js';

export const MAIN_TABLE = 254;
export const RULE_PRIORITY = 6900;

export type NetOp =
  | { op: 'link'; name: string; master?: string; mode: RouterOptions['macvlanMode']; netns?: string }
  | { op: 'sysctl'; key: string; value: string; why: string }
  | { op: 'address'; dev: string; address: string; prefix: number; noPrefixRoute: boolean }
  | { op: 'up'; dev: string }
  | { op: 'route'; family: 4 | 6; dev: string; dst: string; dstLen: number; gateway?: string; table: number; exclusive?: boolean }
  | { op: 'rule'; family: 4 | 6; priority: number; table: number; src?: string; fwmark?: number }
  | { op: 'announce'; dev: string; address: string; family: 4 | 6 };

export interface NetworkPlanInput {
  readonly source: Source;
  readonly gateway: string;
  readonly mode: Mode;
  readonly options: RouterOptions;
}

/** Modes in which this process DNATs, so the namespace must forward. */
export const redirectModes: readonly Mode[] = ['init', 'legacy'];

export function networkPlan({ source, gateway, mode, options }: NetworkPlanInput): NetOp[] {
  const fam = source.family;
  const dev = options.macvlan;
  const host = options.placement === 'host';
  const full = fam === 4 ? 32 : 128;
  const prefix = source.prefix ?? full;
  const table = host ? options.routeTable : MAIN_TABLE;
  const any = fam === 4 ? '0.0.0.0' : '::';
  const ipv = fam === 4 ? 'ipv4' : 'ipv6';
  const ops: NetOp[] = [
    { op: 'link', name: dev, master: options.macvlanMaster, mode: options.macvlanMode, netns: options.targetNetns },
  ];
  if (fam === 4) ops.push({ op: 'sysctl', key: `net/ipv4/conf/${dev}/arp_notify`, value: '1', why: 'gratuitous ARP when the address comes up' });
  else ops.push({ op: 'sysctl', key: `net/ipv6/conf/${dev}/ndisc_notify`, value: '1', why: 'unsolicited NA when the address comes up' });
  if (host) {
    // Replies to DNATed flows come back on macvlan0 from addresses the main
    // table routes elsewhere: strict reverse-path filtering would drop them.
    if (fam === 4) ops.push({ op: 'sysctl', key: `net/ipv4/conf/${dev}/rp_filter`, value: '2', why: 'loose reverse-path check for replies' });
    // The host answers ARP for any of its addresses on any interface, and
    // asks with any of them as sender: the parent would tie EGRESS_SOURCE to
    // its own MAC in the neighbours' caches, and traffic arriving there misses
    // the rules keyed on macvlan0. (IPv6 neighbour discovery is per interface.)
    if (fam === 4 && options.macvlanMaster) {
      ops.push({ op: 'sysctl', key: `net/ipv4/conf/${options.macvlanMaster}/arp_ignore`, value: '1', why: `only macvlan0 answers ARP for ${source.address}` });
      ops.push({ op: 'sysctl', key: `net/ipv4/conf/${options.macvlanMaster}/arp_announce`, value: '2', why: `${options.macvlanMaster}'s ARP requests carry its own address, never ${source.address}` });
    }
  }
  // On a host the subnet route goes into our table, never the main one.
  ops.push({ op: 'address', dev, address: source.address, prefix, noPrefixRoute: host });
  ops.push({ op: 'up', dev });
  const onLink = prefix < full && cidrContains({ address: source.address, family: fam, prefix }, gateway, fam);
  if (host && prefix < full) ops.push({ op: 'route', family: fam, dev, dst: networkOf({ address: source.address, family: fam, prefix }), dstLen: prefix, table });
  if (!onLink) ops.push({ op: 'route', family: fam, dev, dst: gateway, dstLen: full, table });
  // In a pod, ours becomes the only default route (the image deleted the old one).
  ops.push({ op: 'route', family: fam, dev, dst: any, dstLen: 0, gateway, table, exclusive: !host });
  if (host) {
    ops.push({ op: 'rule', family: fam, priority: RULE_PRIORITY, table, src: source.address });
    ops.push({ op: 'rule', family: fam, priority: RULE_PRIORITY + 1, table, fwmark: options.fwmark });
  }
  if (redirectModes.includes(mode)) {
    if (host) {
      // IPv4 forwarding is decided per input interface: clients' side for
      // requests, macvlan0 for replies. Nothing else on the host changes.
      ops.push({ op: 'sysctl', key: `net/${ipv}/conf/${options.clientInterface}/forwarding`, value: '1', why: 'forward DNATed flows from clients' });
      ops.push({ op: 'sysctl', key: `net/${ipv}/conf/${dev}/forwarding`, value: '1', why: 'forward replies of DNATed flows' });
    } else {
      ops.push({ op: 'sysctl', key: `net/${ipv}/conf/all/forwarding`, value: '1', why: 'forward DNATed flows (the pod namespace is ours)' });
    }
  }
  ops.push({ op: 'announce', dev, address: source.address, family: fam });
  return ops;
}

/** One line per operation, for `render --network` and `check`. */
export function describeOp(o: NetOp): string {
  switch (o.op) {
    case 'link': return `ensure link ${o.name}` + (o.master ? ` (create macvlan mode ${o.mode} on ${o.master}${o.netns ? ` into ${o.netns}` : ''} if missing)` : ' (must exist)');
    case 'sysctl': return `sysctl ${o.key.replace(/\//g, '.')}=${o.value}  # ${o.why}`;
    case 'address': return `address ${o.address}/${o.prefix} on ${o.dev}${o.noPrefixRoute ? ' noprefixroute' : ''}`;
    case 'up': return `link ${o.dev} up`;
    case 'route': return `route ${o.dstLen === 0 ? 'default' : `${o.dst}/${o.dstLen}`}${o.gateway ? ` via ${o.gateway}` : ''} dev ${o.dev}${o.table === MAIN_TABLE ? '' : ` table ${o.table}`}`;
    case 'rule': return `rule priority ${o.priority} ${o.src ? `from ${o.src}` : `fwmark 0x${o.fwmark!.toString(16)}`} lookup ${o.table}`;
    case 'announce': return `gratuitous ${o.family === 4 ? 'ARP' : 'NA'} for ${o.address} on ${o.dev}, again after 2 s`;
  }
}
