/**
 * rtnetlink through the `netlink` package: links, addresses, routes, rules.
 * Thin wrappers that speak in strings and numbers; the netlink socket is
 * created per Netlink instance, in the caller's network namespace.
 */
import { createRtNetlink, type RtNetlinkSocket } from 'netlink';
import { bigIntToIp, ipFamily, ipToBigInt } from '../config/ip.js';

const AF = { 4: 2, 6: 10 } as const;
const MACVLAN_MODES = { private: 1, vepa: 2, bridge: 4, passthru: 8 } as const;
const NLM_F_REPLACE = 0x100, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;

export interface LinkInfo { index: number; name: string; up: boolean; mac: string; kind?: string }
export interface RouteInfo { family: 4 | 6; table: number; dst: string; dstLen: number; gateway?: string; oif?: number; scope: number }
export interface RuleInfo { family: 4 | 6; priority?: number; table: number; src?: string; srcLen: number; fwmark?: number }

export class Netlink {
  private readonly s: RtNetlinkSocket;
  constructor() { this.s = createRtNetlink(); }
  close(): void { this.s.socket.close(); }

  async links(): Promise<LinkInfo[]> {
    const ls = await this.s.getLinks();
    return ls.map((l) => ({
      index: l.data.index!,
      name: l.attrs.ifname!,
      up: !!l.data.flags?.up,
      mac: l.attrs.address ? [...l.attrs.address].map((b) => b.toString(16).padStart(2, '0')).join(':') : '',
      kind: l.attrs.linkinfo ? linkKind(l.attrs.linkinfo) : undefined,
    }));
  }

  async link(name: string): Promise<LinkInfo | undefined> {
    return (await this.links()).find((l) => l.name === name);
  }

  /** Create a macvlan on `master`, optionally straight into another netns (fd). */
  async createMacvlan(name: string, masterIndex: number, mode: keyof typeof MACVLAN_MODES, netnsFd?: number): Promise<void> {
    const link = Buffer.alloc(4); link.writeUInt32LE(masterIndex);
    const data = rtattr(1, u32(MACVLAN_MODES[mode]));
    const linkinfo = Buffer.concat([rtattr(1, Buffer.from('macvlan\0')), rtattr(2, data)]);
    await this.s.newLink({}, { ifname: name, link, linkinfo, ...(netnsFd !== undefined ? { netNsFd: netnsFd } : {}) },
      { flags: NLM_F_CREATE | NLM_F_EXCL });
  }

  async setUp(index: number): Promise<void> {
    await this.s.setLink({ index, change: { up: true }, flags: { up: true } });
  }

  async addresses(index: number): Promise<{ address: string; prefix: number; family: 4 | 6 }[]> {
    const as = await this.s.getAddresses();
    return as.filter((a) => a.data.index === index && (a.attrs.local ?? a.attrs.address)).map((a) => {
      const fam = a.data.family === AF[6] ? 6 : 4;
      return { address: ipText(a.attrs.local ?? a.attrs.address!, fam), prefix: a.data.prefixlen!, family: fam };
    });
  }

  async addAddress(index: number, address: string, prefix: number, noPrefixRoute: boolean): Promise<void> {
    const fam = ipFamily(address) as 4 | 6;
    const buf = ipBuf(address);
    const attrs: Record<string, unknown> = { local: buf, address: buf };
    if (noPrefixRoute) attrs.flags = { noprefixroute: true };
    await this.s.newAddress({ family: AF[fam], prefixlen: prefix, index }, attrs as never,
      { flags: NLM_F_CREATE | NLM_F_EXCL });
  }

  async routes(family: 4 | 6, table?: number): Promise<RouteInfo[]> {
    const rs = await this.s.getRoutes({ family: AF[family] });
    return rs
      .map((r) => ({
        family,
        table: r.attrs.table ?? r.data.table!,
        dst: r.attrs.dst ? ipText(r.attrs.dst, family) : family === 4 ? '0.0.0.0' : '::',
        dstLen: r.data.dstLen!,
        gateway: r.attrs.gateway ? ipText(r.attrs.gateway, family) : undefined,
        oif: r.attrs.oif,
        scope: scopeNum(r.data.scope),
      }))
      .filter((r) => table === undefined || r.table === table);
  }

  /** `ip route replace`: create or overwrite the one route for dst/len in table. */
  async replaceRoute(r: { family: 4 | 6; dst: string; dstLen: number; gateway?: string; oif: number; table: number }): Promise<void> {
    const attrs: Record<string, unknown> = { oif: r.oif, table: r.table };
    if (r.dstLen > 0) attrs.dst = ipBuf(r.dst);
    if (r.gateway) attrs.gateway = ipBuf(r.gateway);
    await this.s.newRoute(
      { family: AF[r.family], dstLen: r.dstLen, table: r.table < 256 ? r.table : 252, protocol: 'STATIC', scope: r.gateway ? 'UNIVERSE' : 'LINK', type: 'UNICAST' },
      attrs as never, { flags: NLM_F_CREATE | NLM_F_REPLACE });
  }

  async deleteRoute(r: RouteInfo): Promise<void> {
    const attrs: Record<string, unknown> = { table: r.table };
    if (r.dstLen > 0) attrs.dst = ipBuf(r.dst);
    if (r.gateway) attrs.gateway = ipBuf(r.gateway);
    if (r.oif !== undefined) attrs.oif = r.oif;
    await this.s.delRoute({ family: AF[r.family], dstLen: r.dstLen, table: r.table < 256 ? r.table : 252 }, attrs as never);
  }

  async rules(family: 4 | 6): Promise<RuleInfo[]> {
    const rs = await this.s.getRules({ family: AF[family] });
    return rs.map((r) => ({
      family,
      priority: r.attrs.priority ?? 0,
      table: r.attrs.table ?? r.data.table!,
      src: r.attrs.src ? ipText(r.attrs.src, family) : undefined,
      srcLen: r.data.srcLen ?? 0,
      fwmark: r.attrs.fwmark,
    }));
  }

  async addRule(r: { family: 4 | 6; priority: number; table: number; src?: string; fwmark?: number }): Promise<void> {
    const attrs: Record<string, unknown> = { priority: r.priority, table: r.table };
    if (r.src) attrs.src = ipBuf(r.src);
    if (r.fwmark !== undefined) { attrs.fwmark = r.fwmark; attrs.fwmask = 0xffffffff; }
    await this.s.newRule(
      { family: AF[r.family], srcLen: r.src ? (r.family === 4 ? 32 : 128) : 0, table: r.table < 256 ? r.table : 252, action: 'toTbl' },
      attrs as never, { flags: NLM_F_CREATE | NLM_F_EXCL });
  }
}

function scopeNum(s: unknown): number {
  return typeof s === 'number' ? s : s === 'LINK' ? 253 : s === 'HOST' ? 254 : 0;
}

function rtattr(type: number, data: Buffer): Buffer {
  const len = 4 + data.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0); b.writeUInt16LE(type, 2); data.copy(b, 4);
  return b;
}

function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }

function linkKind(info: Buffer): string | undefined {
  for (let o = 0; o + 4 <= info.length; ) {
    const len = info.readUInt16LE(o), type = info.readUInt16LE(o + 2);
    if (len < 4) break;
    if (type === 1) return info.subarray(o + 4, o + len).toString().replace(/\0+$/, '');
    o += (len + 3) & ~3;
  }
  return undefined;
}

/** Address text to the kernel's network-order bytes, via config/ip.ts. */
export function ipBuf(address: string): Buffer {
  const family = ipFamily(address) as 4 | 6;
  const len = family === 4 ? 4 : 16;
  const b = Buffer.alloc(len);
  let n = ipToBigInt(address, family);
  for (let i = len - 1; i >= 0; i--, n >>= 8n) b[i] = Number(n & 0xffn);
  return b;
}

/** Kernel bytes to canonical address text (the form config/ip.ts produces). */
export function ipText(b: Buffer, family: 4 | 6): string {
  const n = [...b.subarray(0, family === 4 ? 4 : 16)].reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  return bigIntToIp(n, family);
}
