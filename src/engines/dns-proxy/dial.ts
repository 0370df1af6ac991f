/**
 * The user-space path's decisions, whatever carries its bytes: Node sockets
 * (userspace.ts) or the native fast path (fast.ts). Which address a client
 * gets, retrying on the next one, racing a silent one, marking addresses
 * down and up, the warning and debug lines, the counts, the connection cap
 * and the drain live here once; the two carriers only open, close and relay
 * sockets.
 */
import type { DnsProxyOptions } from '../../config/dns-proxy-options.js';
import type { Logger } from '../../observe/log.js';
import type { AddressPool } from './pool.js';

export interface Listener {
  readonly port: number;
  readonly remotePort: number;
  /** Name or IP as configured, for logs. */
  readonly target: string;
  readonly pool: AddressPool;
}

// A client gets at most this many connect attempts (each on another address).
export const MAX_TRIES = 3;
// Linux re-sends an unanswered SYN after 1 s: an address silent that long is
// probably black-holed, so the next one is tried beside it from then on.
export const RACE_AFTER_MS = 1000;

// Why a connection ended (the debug line's `end`); the first two are refusals.
export const NO_ADDRESS = 'no address';
export const ALL_FAILED = 'all connect attempts failed';
export const IDLE = 'idle timeout';
export const clientError = (code: string) => `client error: ${code}`;
export const remoteError = (code: string) => `remote error: ${code}`;

/** Plain numbers, read by metrics at scrape time (lifecycle/engine.ts ListenerStats). */
export interface UserspaceStats {
  accepted: number;
  refused: { 'no-address': number; 'connect-failed': number };
  bytesIn: number;
  bytesOut: number;
}

/** One port's listener: what index.ts drives, on either carrier. */
export abstract class ListenerBase {
  readonly stats: UserspaceStats = { accepted: 0, refused: { 'no-address': 0, 'connect-failed': 0 }, bytesIn: 0, bytesOut: 0 };
  private open = 0;
  private waiting: (() => void)[] = [];

  constructor(private l: Listener, readonly options: DnsProxyOptions, readonly logger: Logger) {}

  abstract get listening(): boolean;
  /** Bind the port on this host ('::' or '0.0.0.0'); throws (or rejects) with the errno's code. */
  protected abstract bind(host: string): Promise<void> | void;
  /** Stop accepting; resolves once the port is closed. */
  protected abstract unlisten(): Promise<void> | void;
  /** Close every open connection now. */
  protected abstract cut(): void;

  get active(): number { return this.open; }
  get target(): Listener { return this.l; }

  /** A reload changed this port's target: new connections go to the new one, open ones stay where they are. */
  retarget(l: Listener): void { this.l = l; }

  /**
   * Listens only once the target has an address (index.ts): until then the
   * port refuses connections (a clear RST) rather than accepting and dropping.
   */
  async listen(): Promise<void> {
    if (this.listening) return;
    try {
      // '::' accepts IPv4 too (dual-stack), as haproxy's bind :port did.
      await this.bind('::');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw e;
      // No IPv6 in this namespace: IPv4 only.
      await this.bind('0.0.0.0');
    }
  }

  /** Stop accepting (the port refuses from now on); resolves once every open connection has ended. */
  async drain(): Promise<void> {
    void this.unlisten();
    if (this.open > 0) await new Promise<void>((r) => { this.waiting.push(r); });
  }

  async close(): Promise<void> {
    this.cut();
    await this.unlisten();
  }

  /** A new client: false when the listener is at its cap (the caller closes it unserved, uncounted). */
  protected admit(): boolean {
    if (this.open >= this.options.maxConnections) return false;
    this.open++;
    this.stats.accepted++;
    return true;
  }

  /**
   * A client connection ended: its counts, its debug line, the drain. `d` is
   * its state when it still has one (always with debug lines); `end` is why,
   * when the carrier knows and `d` does not say.
   */
  ended(d: Dial<Attempt> | undefined, fromClient: number, toClient: number, end?: string): void {
    this.open--;
    const s = this.stats;
    s.bytesIn += fromClient;
    s.bytesOut += toClient;
    const reason = d?.reason ?? end;
    if (reason === NO_ADDRESS) s.refused['no-address']++;
    else if (reason === ALL_FAILED) s.refused['connect-failed']++;
    if (this.options.debug && d) {
      const l = this.l;
      this.logger.debug({
        client: d.who, port: l.port, name: l.target, address: d.chosen ?? null,
        bytesFromClient: fromClient, bytesToClient: toClient,
        durationMs: Date.now() - d.start, end: reason ?? 'closed',
      }, 'connection');
    }
    if (this.open === 0 && this.waiting.length > 0) for (const r of this.waiting.splice(0)) r();
  }
}

/** A connect attempt to one address; each carrier adds its handle. */
export interface Attempt { readonly addr: string }

const NONE: ReadonlySet<string> = new Set();

/** One client's connect attempts, until one answers (then the carrier relays). */
export abstract class Dial<A extends Attempt, L extends ListenerBase = ListenerBase> {
  reason: string | undefined;
  /** The address that answered. */
  chosen: string | undefined;
  /** Debug lines only: the client and when it came (getpeername is unreadable once the socket is closed). */
  who = '';
  start = 0;
  private first: string | undefined;
  private tried: Set<string> | undefined;
  /** Connects in flight (none once one has answered). */
  protected pending: A[] | undefined;

  constructor(protected readonly ls: L) {}

  /** Client's address and port, as text. */
  protected abstract peerText(): string;
  /** Start a connect attempt; the code of an immediate failure instead. */
  protected abstract open(addr: string, port: number): A | string;
  /** Close an attempt that lost the race. */
  protected abstract abandon(a: A): void;
  /** Close the client and everything it has open. */
  protected abstract destroy(): void;
  /** The client is gone already. */
  protected abstract gone(): boolean;
  /** The attempt answered: relay the client to it. */
  protected abstract relay(a: A): void;
  /** No attempt in flight any more. */
  protected settled(): void {}

  /** Called by the subclass once it can name its client. */
  protected begin(): void {
    if (!this.ls.options.debug) return;
    this.who = this.peerText();
    this.start = Date.now();
  }

  finish(why: string): void {
    this.reason ??= why;
    this.destroy();
  }

  private triedCount(): number { return this.tried ? this.tried.size : this.first === undefined ? 0 : 1; }
  private triedList(): string[] { return this.tried ? [...this.tried] : this.first === undefined ? [] : [this.first]; }

  /** Connect to the next address (the first, a retry, or a racer beside a silent one). */
  attempt(): void {
    if (this.chosen !== undefined || this.gone()) return;
    const { ls } = this;
    const l = ls.target;
    const n = this.triedCount();
    const addr = n < MAX_TRIES ? l.pool.pick(this.tried ?? (this.first === undefined ? NONE : new Set([this.first]))) : undefined;
    if (addr === undefined) {
      // Others still connecting: one of them may yet answer.
      if (this.pending) return;
      if (n > 0) ls.logger.warn({ client: this.who || this.peerText(), port: l.port, name: l.target, tried: this.triedList() }, 'no address accepted the connection');
      return this.finish(n ? ALL_FAILED : NO_ADDRESS);
    }
    if (this.first === undefined) this.first = addr;
    else (this.tried ??= new Set([this.first])).add(addr);
    const a = this.open(addr, l.remotePort);
    // Failed at once (no route, a bind error): the same as failing later.
    if (typeof a === 'string') return this.down(addr, a);
    (this.pending ??= []).push(a);
  }

  private drop(a: A): boolean {
    const p = this.pending;
    const i = p ? p.indexOf(a) : -1;
    if (i < 0) return false;
    p!.splice(i, 1);
    if (p!.length === 0) { this.pending = undefined; this.settled(); }
    return true;
  }

  private down(addr: string, code: string): void {
    const l = this.ls.target;
    l.pool.markDown(addr);
    this.ls.logger.warn({ port: l.port, name: l.target, address: addr, err: code }, 'connect failed, address marked down');
    this.attempt();
  }

  /** An attempt failed (refused, timed out...): its address is marked down, the next one tried. */
  failed(a: A, code: string): void {
    if (this.drop(a)) this.down(a.addr, code);
  }

  connected(a: A): void {
    if (!this.drop(a)) return;
    const l = this.ls.target;
    l.pool.markUp(a.addr);
    // The racers that lost had not answered for at least RACE_AFTER_MS:
    // down, so the next clients skip them instead of waiting again.
    for (const r of this.pending ?? []) {
      this.abandon(r);
      l.pool.markDown(r.addr);
      this.ls.logger.warn({ port: l.port, name: l.target, address: r.addr, err: 'ETIMEDOUT' }, 'connect unanswered while another address answered, address marked down');
    }
    if (this.pending) { this.pending = undefined; this.settled(); }
    if (this.gone()) return this.abandon(a);
    this.chosen = a.addr;
    this.relay(a);
  }
}
