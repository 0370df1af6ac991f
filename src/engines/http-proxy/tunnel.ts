/**
 * The CONNECT decision, one place for both transports: net.Socket tunnels
 * (connect.ts) and the native fast path (fast.ts). Target and port list,
 * policy and route, the attempts over the allowed addresses, the replies and
 * the tunnel's log line are decided here; a transport only says how an attempt
 * connects, how a reply is written before closing, and whether the client is
 * still there, and reports back (failed(), ended(), left()).
 */
import { hostText } from '../../config/host.js';
import type { Address } from '../../dns/lookup.js';
import { closingReply } from './http1.js';
import { logEnd, type RequestLog } from './logline.js';
import { denialText } from './policy.js';
import { route, type Route } from './route.js';
import type { Runtime } from './runtime.js';
import { parseAuthority } from './target.js';

export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');

/** Addresses after the first that are tried when a connect fails. */
export const MAX_ATTEMPTS = 3;

const NONE: readonly Address[] = [];

export abstract class ConnectTunnel {
  readonly log: RequestLog;
  private addrs = NONE;
  private port = 0;
  private i = 0;

  constructor(readonly rt: Runtime, client: string, target: string) {
    this.log = { start: performance.now(), client, method: 'CONNECT', target };
  }

  /** Whether the client has gone away. */
  protected abstract gone(): boolean;
  /** Start an attempt; its failure comes back as failed(), its success as the transport's relay. */
  protected abstract dial(a: Address, port: number): void;
  /** Write a closing reply to the client and close (after a refusal or the last failed attempt). */
  protected abstract reply(text: string): void;
  /** Close at once (an unexpected error). */
  protected abstract abort(): void;

  /**
   * Decide and connect. Synchronous up to the connect for IP literals
   * (route() answers them without a promise): no microtask turn between the
   * CONNECT head and the SYN.
   */
  start(): void {
    const { rt, log } = this;
    const t = parseAuthority(log.target);
    if (!t) return this.refuse(400, 'bad CONNECT target, expected host:port\n');
    log.target = `${hostText(t.host)}:${t.port}`;
    if (rt.connectPorts && !rt.connectPorts.has(t.port)) return this.refuse(403, `denied: CONNECT to port ${t.port} is not allowed\n`, 'port');
    this.port = t.port;
    const r = route(rt, t);
    if (r instanceof Promise) {
      r.then((x) => this.routed(x)).catch((e: unknown) => {
        rt.logger.error({ err: e }, 'request failed');
        this.abort();
      });
    } else this.routed(r);
  }

  private routed(r: Route): void {
    const log = this.log;
    if (!r.ok) {
      log.rule = r.decision?.rule?.text;
      return this.refuse(r.status, r.status === 403 ? denialText(r.decision!) : `${r.reason}\n`, r.status === 403 ? 'deny' : 'error');
    }
    log.decision = 'allow';
    log.rule = r.decision.rule?.text ?? '*';
    if (this.gone()) return logEnd(this.rt, log, 499, 0, 0);
    this.addrs = r.addresses;
    this.attempt(0);
  }

  private attempt(i: number): void {
    this.i = i;
    const a = this.addrs[i]!;
    this.log.upstream = `${a.family === 6 ? `[${a.address}]` : a.address}:${this.port}`;
    this.dial(a, this.port);
  }

  /**
   * The attempt failed (502: refused, unreachable...; 504: no answer within
   * the connect timeout): the next allowed address, as a browser would, up to
   * MAX_ATTEMPTS; then the client hears about this last failure.
   */
  protected failed(status: 502 | 504, why: string): void {
    const { rt, log } = this;
    if (rt.debug) rt.logger.debug({ client: log.client, target: log.target, upstream: log.upstream, error: why }, 'connect failed');
    if (this.i + 1 < Math.min(this.addrs.length, MAX_ATTEMPTS) && !this.gone()) return this.attempt(this.i + 1);
    this.refuse(status, status === 504 ? `connect to ${log.upstream} timed out\n` : `connect to ${log.upstream} failed: ${why}\n`);
  }

  protected refuse(status: number, body: string, decision = 'error'): void {
    const log = this.log;
    if (log.status !== undefined) return;
    log.decision ??= decision;
    this.reply(closingReply(status, body));
    logEnd(this.rt, log, status, 0, 0);
  }

  /** The tunnel was relayed and has ended: its line, with the payload bytes each way. */
  protected ended(bytesIn: number, bytesOut: number): void {
    logEnd(this.rt, this.log, 200, bytesIn, bytesOut);
  }

  /** The client left while its tunnel was connecting (after a refusal its line is written already). */
  protected left(): void {
    if (this.log.decision === 'allow') logEnd(this.rt, this.log, 499, 0, 0);
  }
}
