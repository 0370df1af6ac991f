/**
 * The router's deployment options beyond the OpenShift contract, with
 * defaults that make the daemon behave exactly like the image in a pod.
 */
import { die } from './errors.js';
import type { Env } from './env.js';
import { parseInteger } from './int.js';
import { parsePlacement, type Placement } from './placement.js';

export type { Placement } from './placement.js';

export interface RouterOptions {
  /** Where the daemon runs: the egress pod's namespace, or the host's. */
  readonly placement: Placement;
  /** The interface clients reach the router on (the pod's eth0). */
  readonly clientInterface: string;
  /** The egress interface name; always macvlan0 in the OpenShift contract. */
  readonly macvlan: string;
  /** Master interface to create macvlan0 on when it does not exist. */
  readonly macvlanMaster?: string;
  /** macvlan mode when we create it. */
  readonly macvlanMode: 'bridge' | 'private' | 'vepa' | 'passthru';
  /** A netns path (e.g. /proc/PID/ns/net) to move a created macvlan0 into. */
  readonly targetNetns?: string;
  /** nft table name (family follows EGRESS_SOURCE). */
  readonly table: string;
  /** Host placement: routing table and firewall mark of our flows. */
  readonly routeTable: number;
  readonly fwmark: number;
}

export const DEFAULT_OPTIONS: RouterOptions = {
  placement: 'pod',
  clientInterface: 'eth0',
  macvlan: 'macvlan0',
  macvlanMode: 'bridge',
  table: 'egress_router',
  routeTable: 230,
  fwmark: 0xe6,
};

export const OPTION_VARS: Record<string, string> = {
  EGRESS_PLACEMENT: "'pod' (default) or 'host' (bare metal: policy routing, host routes untouched)",
  EGRESS_CLIENT_INTERFACE: 'interface clients arrive on (default eth0)',
  EGRESS_MACVLAN_MASTER: 'create macvlan0 on this interface when macvlan0 does not exist',
  EGRESS_MACVLAN_MODE: 'macvlan mode when creating it: bridge (default), private, vepa, passthru',
  EGRESS_MACVLAN_NETNS: 'netns path to move a created macvlan0 into (e.g. /proc/PID/ns/net)',
  EGRESS_NFT_TABLE: 'name of the router-owned nftables table (default egress_router)',
  EGRESS_ROUTE_TABLE: 'host placement: routing table id (default 230)',
  EGRESS_FWMARK: 'host placement: firewall mark for DNATed flows (default 0xe6)',
};

const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

export function parseOptions(env: Env): RouterOptions {
  const o = { ...DEFAULT_OPTIONS } as { -readonly [K in keyof RouterOptions]: RouterOptions[K] };
  o.placement = parsePlacement(env);
  o.clientInterface = ifname(env, 'EGRESS_CLIENT_INTERFACE') ?? o.clientInterface;
  o.macvlanMaster = ifname(env, 'EGRESS_MACVLAN_MASTER');
  const mode = env.EGRESS_MACVLAN_MODE || 'bridge';
  if (!['bridge', 'private', 'vepa', 'passthru'].includes(mode)) die(`EGRESS_MACVLAN_MODE '${mode}' is invalid`);
  o.macvlanMode = mode as RouterOptions['macvlanMode'];
  if (env.EGRESS_MACVLAN_NETNS) o.targetNetns = env.EGRESS_MACVLAN_NETNS;
  const table = env.EGRESS_NFT_TABLE;
  if (table) {
    if (!/^[A-Za-z][A-Za-z0-9_]{0,30}$/.test(table)) die(`EGRESS_NFT_TABLE '${table}' is invalid`);
    o.table = table;
  }
  o.routeTable = integer(env, 'EGRESS_ROUTE_TABLE', 1, 0xfffffffe, o.routeTable, [253, 254, 255]);
  o.fwmark = integer(env, 'EGRESS_FWMARK', 1, 0xffffffff, o.fwmark, []);
  return o;
}

function ifname(env: Env, name: string): string | undefined {
  const v = env[name];
  if (!v) return undefined;
  if (!IFNAME.test(v)) die(`${name} '${v}' is not a valid interface name`);
  return v;
}

function integer(env: Env, name: string, min: number, max: number, dflt: number, reserved: number[]): number {
  const v = env[name];
  if (!v) return dflt;
  const n = parseInteger(v, min, max, true);
  if (n === undefined || reserved.includes(n)) die(`${name} '${v}' is invalid`);
  return n;
}
