/**
 * The addresses one listener forwards to: round-robin over all of them (the
 * image's haproxy sent everything to the first), skipping addresses marked
 * down after a failed connect until their back-off ends.
 */
export interface PoolOptions {
  /** First back-off after a failure, ms; doubles per consecutive failure. */
  readonly downMs?: number;
  readonly maxDownMs?: number;
}

interface Down { until: number; failures: number }

export class AddressPool {
  private list: string[] = [];
  private next = 0;
  private readonly down = new Map<string, Down>();

  constructor(private readonly opts: PoolOptions = {}, initial: readonly string[] = []) { this.set(initial); }

  get addresses(): readonly string[] { return this.list; }

  /** New address set from the resolver; down marks of addresses still present are kept. */
  set(addresses: readonly string[]): void {
    this.list = [...addresses];
    for (const a of [...this.down.keys()]) if (!addresses.includes(a)) this.down.delete(a);
    if (this.next >= this.list.length) this.next = 0;
  }

  isDown(addr: string, now = Date.now()): boolean {
    const d = this.down.get(addr);
    return d !== undefined && d.until > now;
  }

  /**
   * The next address in turn that is up and not in `tried`. When every
   * untried address is down, the one whose back-off ends first: better a
   * probably-dead address than refusing a client outright.
   */
  pick(tried: ReadonlySet<string> = new Set(), now = Date.now()): string | undefined {
    const n = this.list.length;
    let fallback: string | undefined;
    for (let i = 0; i < n; i++) {
      const a = this.list[(this.next + i) % n]!;
      if (tried.has(a)) continue;
      if (!this.isDown(a, now)) {
        this.next = (this.next + i + 1) % n;
        return a;
      }
      if (fallback === undefined || this.down.get(a)!.until < this.down.get(fallback)!.until) fallback = a;
    }
    return fallback;
  }

  markDown(addr: string, now = Date.now()): void {
    const prev = this.down.get(addr);
    const failures = (prev?.failures ?? 0) + 1;
    const ms = Math.min((this.opts.downMs ?? 1000) * 2 ** (failures - 1), this.opts.maxDownMs ?? 30_000);
    this.down.set(addr, { until: now + ms, failures });
  }

  markUp(addr: string): void {
    this.down.delete(addr);
  }
}
