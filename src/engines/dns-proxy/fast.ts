/**
 * The user-space data path on the native fast path (engines/fastpath, relay
 * mode): C accepts, connects and relays; this listener only answers its
 * events with the decisions of dial.ts (which address, retry, race, logs,
 * counts), the same code the Node-socket path (userspace.ts) runs.
 *
 * Per connection, JavaScript holds a FastDial while it connects; once an
 * address answers the connection is C's alone (nothing allocated here for
 * it) unless debug lines are on, which need its client, address and start.
 */
import { getSystemErrorMap } from 'node:util';
import type { Logger } from '../../observe/log.js';
import type { DnsProxyOptions } from '../../config/dns-proxy-options.js';
import { fastPath, Reasons, type ConnectOptions, type FastHandler } from '../fastpath/index.js';
import { sweepEvery } from '../sweep.js';
import { Dial, IDLE, ListenerBase, RACE_AFTER_MS, clientError, remoteError, type Attempt, type Listener } from './dial.js';

interface FastAttempt extends Attempt { readonly n: number }

export class FastListener extends ListenerBase implements FastHandler {
  readonly fp = fastPath();
  private lid: number | undefined;
  /** Listener ids closed while connections of theirs were open: forgotten once none is. */
  private readonly closedLids: number[] = [];
  /** Connections still connecting (every connection with debug lines), by id. */
  private readonly dials = new Map<number, FastDial>();
  /** Set while a client over the cap is closed: its closed() event is not counted. */
  private refusing = false;
  /** Every attempt's: the timeout and the race are the fast path's sweep's (connectFailed ETIMEDOUT, connectSlow). */
  readonly connectOptions: ConnectOptions;

  constructor(l: Listener, o: DnsProxyOptions, log: Logger) {
    super(l, o, log);
    this.connectOptions = { timeoutMs: o.connectTimeoutMs, raceMs: Math.min(RACE_AFTER_MS, o.connectTimeoutMs), localAddress: o.bindSource };
    // The fast path's own sweep checks idle connections (connects and races every 100 ms regardless).
    if (o.idleTimeoutMs > 0) this.fp.sweepEvery(sweepEvery(o.idleTimeoutMs));
  }

  get listening(): boolean { return this.lid !== undefined; }

  protected bind(host: string): void {
    const port = this.target.port;
    try {
      this.lid = this.fp.listen(this, { host, port, mode: 'relay', idleMs: this.options.idleTimeoutMs });
    } catch (e) {
      // Node's own wording, so 'cannot listen' reads the same on both paths.
      const code = (e as NodeJS.ErrnoException).code ?? '';
      const text = [...getSystemErrorMap().values()].find(([name]) => name === code)?.[1] ?? (e as Error).message;
      throw Object.assign(new Error(`listen ${code}: ${text} ${host}:${port}`), { code });
    }
  }

  protected unlisten(): void {
    if (this.lid === undefined) return;
    this.fp.closeListener(this.lid);
    this.closedLids.push(this.lid);
    this.lid = undefined;
    this.forgetClosed();
  }

  protected cut(): void {
    // A copy: the last closed() forgets the closed ids.
    for (const lid of [...this.closedLids]) this.fp.destroyAll(lid);
    if (this.lid !== undefined) this.fp.destroyAll(this.lid);
  }

  private forgetClosed(): void {
    if (this.active === 0) for (const lid of this.closedLids.splice(0)) this.fp.forget(lid);
  }

  accept(id: number): void {
    if (!this.admit()) {
      this.refusing = true;
      this.fp.destroy(id);
      this.refusing = false;
      return;
    }
    const d = new FastDial(this, id);
    this.dials.set(id, d);
    d.attempt();
  }

  connectFailed(id: number, attempt: number, code: string): void {
    const d = this.dials.get(id);
    const a = d?.attemptOf(attempt);
    if (a) d!.failed(a, code);
  }

  connectSlow(id: number): void {
    this.dials.get(id)?.attempt();
  }

  connected(id: number, attempt: number): void {
    const d = this.dials.get(id);
    const a = d?.attemptOf(attempt);
    if (!a) return;
    if (!this.options.debug) this.dials.delete(id);
    d!.connected(a);
  }

  closed(id: number, fromClient: number, toClient: number, reason: Reasons, code?: string): void {
    if (this.refusing) return;
    const d = this.dials.get(id);
    if (d) { this.dials.delete(id); d.done = true; }
    // Why, as the Node-socket path words it: only needed for a debug line.
    this.ended(d, fromClient, toClient, this.options.debug && d?.reason === undefined ? this.why(reason, code) : undefined);
    if (this.closedLids.length > 0) this.forgetClosed();
  }

  private why(reason: Reasons, code: string | undefined): string | undefined {
    if (reason === Reasons.Idle) return IDLE;
    if (reason === Reasons.RemoteError) return remoteError(code ?? '?');
    // A reset while connecting ends it at once here; on Node sockets it shows on the first read.
    if ((reason === Reasons.ClientError || reason === Reasons.ClientClosed) && code) return clientError(code);
    return undefined;
  }
}

class FastDial extends Dial<FastAttempt, FastListener> {
  /** closed() has been reported. */
  done = false;

  constructor(ls: FastListener, private readonly id: number) {
    super(ls);
    this.begin();
  }

  attemptOf(n: number): FastAttempt | undefined {
    if (this.pending) for (const a of this.pending) if (a.n === n) return a;
    return undefined;
  }

  protected peerText(): string {
    const p = this.ls.fp.peer(this.id);
    return p ? `${p[0]}:${p[1]}` : '?';
  }

  protected open(addr: string, port: number): FastAttempt | string {
    const n = this.ls.fp.connect(this.id, addr, port, this.ls.connectOptions);
    return typeof n === 'string' ? n : { n, addr };
  }

  // The fast path closed the other attempts already when one connected.
  protected abandon(a: FastAttempt): void { this.ls.fp.cancel(this.id, a.n); }
  protected destroy(): void { this.ls.fp.destroy(this.id); }
  protected gone(): boolean { return this.done; }
  // C relays from here on.
  protected relay(): void {}
}
