/**
 * The dnsName rules' names, kept resolved: one Watcher (src/dns) per name,
 * with openshift-sdn's rules (union over the nameservers, minimum TTL,
 * clamped; a failed refresh keeps the last good addresses) and our fix: a
 * name whose first lookup fails is retried with back-off, at most 30 s apart.
 * A and, when a policy using the name has IPv6 sources, AAAA records.
 */
import { canonicalIp, ipFamily } from '../../config/ip.js';
import { Watcher } from '../../dns/watcher.js';
import type { ResolvConf } from '../../dns/resolv-conf.js';
import type { Logger } from '../../observe/log.js';

/** TTL ceiling and retry back-off cap, seconds. */
export const MAX_INTERVAL_S = 30;

export interface NameSource {
  readonly addresses: readonly string[];
  start(): Promise<void>;
  stop(): void;
  on(event: 'change', f: (addresses: readonly string[]) => void): unknown;
  on(event: 'failure', f: (err: Error, failures: number) => void): unknown;
}

export type NameSourceFactory = (name: string, ipv6: boolean) => NameSource;

export function dnsNameSource(conf: ResolvConf, port?: number): NameSourceFactory {
  return (name, ipv6) => new Watcher(name, { conf, both: ipv6, port, maxTtl: MAX_INTERVAL_S, retry: 1 });
}

export class NameBook {
  private readonly watched = new Map<string, { src: NameSource; ipv6: boolean }>();

  constructor(
    private readonly factory: NameSourceFactory,
    private readonly log: Logger,
    private readonly onChange: (name: string, addresses: readonly string[]) => void,
  ) {}

  /**
   * Watches exactly `wanted`; new names get their first lookup, awaited at
   * most `waitMs` (a dead nameserver must not hold the policy back: the name
   * joins the table when it resolves). Returns the addresses known now.
   */
  async sync(wanted: ReadonlyMap<string, { ipv6: boolean }>, waitMs: number): Promise<Map<string, readonly string[]>> {
    for (const [name, w] of this.watched) {
      if (wanted.get(name)?.ipv6 !== w.ipv6) { w.src.stop(); this.watched.delete(name); }
    }
    const starts: Promise<void>[] = [];
    for (const [name, { ipv6 }] of wanted) {
      if (this.watched.has(name)) continue;
      const src = this.factory(name, ipv6);
      src.on('change', (addresses) => this.onChange(name, canonical(addresses)));
      src.on('failure', (err, failures) => this.log.warn({ name, err: err.message, failures }, 'name lookup failed'));
      this.watched.set(name, { src, ipv6 });
      starts.push(src.start());
    }
    if (starts.length) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(starts), new Promise<void>((r) => { timer = setTimeout(r, waitMs); })]);
      clearTimeout(timer);
    }
    return new Map([...this.watched].map(([n, w]) => [n, canonical(w.src.addresses)]));
  }

  stop(): void {
    for (const w of this.watched.values()) w.src.stop();
    this.watched.clear();
  }
}

/** One spelling per address (the table's keys and the verdicts compare them as text), sorted, no repeats. */
function canonical(addresses: readonly string[]): string[] {
  const out = new Set<string>();
  for (const a of addresses) {
    const f = ipFamily(a);
    if (f !== 0) out.add(canonicalIp(a, f));
  }
  return [...out].sort();
}
