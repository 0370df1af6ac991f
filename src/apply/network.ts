/**
 * Carries out a network plan. Every step checks before it acts, so running
 * set-up again (a pod restart) changes nothing and leaves one copy of each
 * address, route and rule.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { Logger } from '../observe/log.js';
import { describeOp, type NetOp } from '../plan/network.js';
import { Netlink } from './netlink.js';
import { setSysctl } from './sysctl.js';

export class NetworkError extends Error {}

export interface ApplyNetworkResult {
  /** Set when the macvlan was created into another netns: the rest of the plan must run there. */
  movedTo?: string;
  /** Pending second announcement (cleared by stop()). */
  stop(): void;
}

export interface ApplyNetworkOptions {
  /** The process exits right after set-up (init mode): hand the second announcement to a detached child. */
  readonly exiting?: boolean;
}

export async function applyNetwork(ops: readonly NetOp[], log: Logger, opts: ApplyNetworkOptions = {}): Promise<ApplyNetworkResult> {
  const nl = new Netlink();
  const timers: NodeJS.Timeout[] = [];
  const result: ApplyNetworkResult = { stop: () => timers.forEach(clearTimeout) };
  try {
    for (const o of ops) {
      let moved: string | undefined;
      try {
        moved = await step(nl, o, log, timers, opts);
      } catch (e) {
        if (e instanceof NetworkError) throw e;
        // Name the step that failed: "Request rejected: EINVAL" alone helps nobody.
        throw new NetworkError(`${describeOp(o).split('  #')[0]}: ${(e as Error).message}`);
      }
      if (moved) return { ...result, movedTo: moved };
    }
    return result;
  } finally {
    nl.close();
  }
}

async function index(nl: Netlink, dev: string): Promise<number> {
  const l = await nl.link(dev);
  if (!l) throw new NetworkError(`interface ${dev} not found`);
  return l.index;
}

async function step(nl: Netlink, o: NetOp, log: Logger, timers: NodeJS.Timeout[], opts: ApplyNetworkOptions): Promise<string | undefined> {
  switch (o.op) {
    case 'link': {
      const l = await nl.link(o.name);
      if (l) {
        log.info({ step: 'interface', interface: o.name, mac: l.mac, kind: l.kind, action: 'adopted' }, `adopted ${o.name}`);
        return undefined;
      }
      if (!o.master) {
        throw new NetworkError(`${o.name} does not exist and EGRESS_MACVLAN_MASTER is not set: cannot create it`);
      }
      const master = await nl.link(o.master);
      if (!master) throw new NetworkError(`EGRESS_MACVLAN_MASTER interface '${o.master}' not found`);
      let fd: number | undefined;
      try {
        if (o.netns) fd = openNetns(o.netns);
        await nl.createMacvlan(o.name, master.index, o.mode, fd);
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
      log.info({ step: 'interface', interface: o.name, master: o.master, mode: o.mode, netns: o.netns, action: 'created' }, `created ${o.name} on ${o.master}`);
      return o.netns;
    }
    case 'sysctl': {
      const changed = await setSysctl(o.key, o.value);
      log.debug({ step: 'sysctl', key: o.key, value: o.value, changed }, o.why);
      return undefined;
    }
    case 'address': {
      const i = await index(nl, o.dev);
      const have = await nl.addresses(i);
      const same = have.find((a) => a.address === o.address);
      if (same && same.prefix !== o.prefix) {
        throw new NetworkError(`${o.address} is already on ${o.dev} with prefix /${same.prefix}, not /${o.prefix}`);
      }
      if (!same) await nl.addAddress(i, o.address, o.prefix, o.noPrefixRoute);
      log.info({ step: 'address', interface: o.dev, address: `${o.address}/${o.prefix}`, action: same ? 'present' : 'added' }, `address ${o.address}/${o.prefix} on ${o.dev}`);
      return undefined;
    }
    case 'up': {
      const l = await nl.link(o.dev);
      if (!l) throw new NetworkError(`interface ${o.dev} not found`);
      if (!l.up) await nl.setUp(l.index);
      log.debug({ step: 'link', interface: o.dev, action: l.up ? 'already up' : 'up' }, `${o.dev} up`);
      return undefined;
    }
    case 'route': {
      const oif = await index(nl, o.dev);
      if (o.exclusive) {
        // Remove other routes for the same prefix (the old default via eth0).
        for (const r of await nl.routes(o.family, o.table)) {
          if (r.dstLen === o.dstLen && r.dst === o.dst && (r.oif !== oif || r.gateway !== o.gateway)) {
            await nl.deleteRoute(r);
            log.info({ step: 'route', removed: `${r.dstLen === 0 ? 'default' : r.dst}${r.gateway ? ` via ${r.gateway}` : ''}` }, 'replaced previous route');
          }
        }
      }
      await nl.replaceRoute({ family: o.family, dst: o.dst, dstLen: o.dstLen, gateway: o.gateway, oif, table: o.table });
      const what = `${o.dstLen === 0 ? 'default' : `${o.dst}/${o.dstLen}`}${o.gateway ? ` via ${o.gateway}` : ''} dev ${o.dev}`;
      log.info({ step: 'route', route: what, table: o.table }, `route ${what}`);
      return undefined;
    }
    case 'rule': {
      const exists = (await nl.rules(o.family)).some((r) =>
        r.priority === o.priority && r.table === o.table && r.src === o.src && r.fwmark === o.fwmark);
      if (!exists) await nl.addRule(o);
      log.info({ step: 'rule', priority: o.priority, table: o.table, from: o.src, fwmark: o.fwmark, action: exists ? 'present' : 'added' }, 'policy routing rule');
      return undefined;
    }
    case 'announce': {
      announce(o.dev, o.address, o.family, log);
      if (opts.exiting && o.family === 4) {
        spawn('sh', ['-c', `sleep 2; arping -q -U -c 1 -I ${o.dev} ${o.address}`], { detached: true, stdio: 'ignore' }).unref();
        return undefined;
      }
      // Once more a couple of seconds later, as the image does: the first
      // may go out before the switch has learnt the new port.
      const t = setTimeout(() => announce(o.dev, o.address, o.family, log), 2000);
      t.unref();
      timers.push(t);
      return undefined;
    }
  }
}

function announce(dev: string, address: string, family: 4 | 6, log: Logger): void {
  if (family === 6) return; // ndisc_notify makes the kernel send unsolicited NAs
  // iputils arping, as the OpenShift image: -U unsolicited ARP for our address.
  const p = spawn('arping', ['-q', '-U', '-c', '1', '-I', dev, address], { stdio: 'ignore' });
  p.on('error', (e) => log.warn({ step: 'announce', err: e.message }, 'arping not available; relying on arp_notify'));
  p.on('exit', (code) => log.info({ step: 'announce', interface: dev, address, ok: code === 0 }, 'gratuitous ARP sent'));
}

function openNetns(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new NetworkError(`EGRESS_MACVLAN_NETNS '${path}' cannot be opened: ${(e as NodeJS.ErrnoException).code}`);
  }
}
