/**
 * The failover lab's configuration, derived from the shipped examples
 * (examples/host/failover/) by replacing paths, interface names and the
 * second host's identity only. A replacement whose text is missing from the
 * example throws: an edited example cannot silently drift from the lab.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lab.js';

export const EXAMPLES = join(ROOT, 'examples', 'host', 'failover');

/** The example `file` with each `[from, to]` replaced (each `from` must be present). */
export function fromExample(file: string, subs: readonly (readonly [string, string])[]): string {
  let text = readFileSync(join(EXAMPLES, file), 'utf8');
  for (const [from, to] of subs) {
    if (!text.includes(from)) throw new Error(`${file}: expected '${from}' (the lab derives its configuration from the example)`);
    text = text.split(from).join(to);
  }
  return text;
}

export interface NodeConfig {
  /** This host's folder: configs, sockets, pid files, the notify script's state. */
  readonly dir: string;
  readonly envFile: string;
  /** What the notify script runs as `egress-router`. */
  readonly router: string;
  /** Host B of the example (router_id egress-b, priority 100). */
  readonly second: boolean;
  readonly sync: string;
  readonly peerSync: string;
}

/** keepalived.conf, conntrackd.conf, failover.conf and the systemctl stand-in (it asks the test over systemctl.sock). */
export function writeNodeConfigs(c: NodeConfig): void {
  const d = c.dir;
  mkdirSync(join(d, 'state'), { recursive: true });
  const systemctl = join(d, 'systemctl');
  writeFileSync(systemctl, `#!/bin/sh\n# lab stand-in for systemctl: asks the test process\nprintf '%s\\n' "$*" | socat -t 30 - UNIX-CONNECT:${join(d, 'systemctl.sock')} | grep -q '^ok'\n`);
  chmodSync(systemctl, 0o755);
  writeFileSync(join(d, 'conntrackd.conf'), fromExample('conntrackd.conf', [
    ['IPv4_address 10.255.0.1\n', `IPv4_address ${c.sync}\n`],
    ['IPv4_Destination_Address 10.255.0.2', `IPv4_Destination_Address ${c.peerSync}`],
    ['Interface eth2', 'Interface sync0'],
    ['/var/log/conntrackd.log', join(d, 'conntrackd.log')],
    ['/var/lock/conntrackd.lock', join(d, 'conntrackd.lock')],
    ['/var/run/conntrackd.ctl', join(d, 'conntrackd.ctl')],
  ]));
  writeFileSync(join(d, 'failover.conf'), fromExample('failover.conf', [
    ['EGRESS_ENV=/etc/egress-router/egress.env', `EGRESS_ENV=${c.envFile}`],
    ['SYSTEMCTL=systemctl', `SYSTEMCTL=${systemctl}`],
    ['EGRESS_ROUTER=/usr/local/bin/egress-router', `EGRESS_ROUTER=${c.router}`],
    ['-C /etc/conntrackd/conntrackd.conf', `-C ${join(d, 'conntrackd.conf')}`],
    ['STATE_DIR=/run/egress-router-failover', `STATE_DIR=${join(d, 'state')}`],
  ]));
  writeFileSync(join(d, 'keepalived.conf'), fromExample('keepalived.conf', [
    ['/usr/local/lib/egress-router/egress-router-notify', join(EXAMPLES, 'egress-router-notify')],
    ['/etc/egress-router/failover.conf', join(d, 'failover.conf')],
    ...(c.second ? [['router_id egress-a', 'router_id egress-b'], ['priority 150', 'priority 100']] as const : []),
  ]));
}
