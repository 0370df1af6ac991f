/**
 * Plain HTTP in absolute form, forwarded with undici over pooled keep-alive
 * connections. The pool is keyed by the address the policy allowed (origin
 * `http://IP:port`), never by name, so undici has nothing to resolve: the
 * request goes exactly where the decision said. The client's Host header is
 * kept. Bodies stream both ways with backpressure (pause/resume).
 */
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { denialText } from './policy.js';
import { MAX_ATTEMPTS } from './tunnel.js';
import type { Address } from '../../dns/lookup.js';
import { route, type Route } from './route.js';
import type { Runtime } from './runtime.js';
import { hostText } from '../../config/host.js';
import { parseAbsoluteUrl, type AbsoluteUrl } from './target.js';
import type { Exchange } from './exchange.js';
import { logEnd, type RequestLog } from './logline.js';

/** Hop-by-hop headers (RFC 9110 7.6.1), plus the proxy's own. Lower-case. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/**
 * Not forwarded either: `expect: 100-continue` was answered to the client by
 * front.ts already (the body is on its way), and undici refuses the header.
 */
const REQUEST_ONLY = new Set(['expect']);
const VIA = '1.1 egress-router';

export function createUpstream(rt: Runtime): Agent {
  return new Agent({
    keepAliveTimeout: rt.limits.upstreamKeepAliveMs,
    keepAliveMaxTimeout: rt.limits.upstreamKeepAliveMs,
    headersTimeout: rt.limits.idleTimeoutMs,
    bodyTimeout: rt.limits.idleTimeoutMs,
    connectTimeout: rt.limits.connectTimeoutMs,
    localAddress: rt.localAddress,
    connect: { noDelay: true },
  });
}

export function handleRequest(rt: Runtime, agent: Agent, ex: Exchange): void | Promise<void> {
  const url = ex.head.target;
  const relay = new Relay(rt, agent, ex);
  if (url.charCodeAt(0) === 47 /* / */) return relay.reply(400, 'this is a proxy: send absolute-form requests (http://host/path) or CONNECT\n');
  const t = parseAbsoluteUrl(url);
  if (!t) return relay.reply(400, 'bad request target, expected http://host[:port]/path\n');
  relay.log.target = `${hostText(t.host)}:${t.port}${t.path}`;
  const r = route(rt, t);
  // IP literals are decided synchronously: no promise on the common path.
  return r instanceof Promise ? r.then((x) => relay.start(x, t)) : relay.start(r, t);
}

/**
 * One proxied request: the undici dispatch handler and its bookkeeping, one
 * object per request (methods on the prototype, no closures per request).
 */
class Relay implements Dispatcher.DispatchHandler {
  readonly log: RequestLog;
  private bytesOut = 0;
  private status = 0;
  private t: AbsoluteUrl | undefined;
  private addresses: readonly Address[] = [];
  private tried = 0;
  private headers: string[] = [];

  constructor(private readonly rt: Runtime, private readonly agent: Agent, private readonly ex: Exchange) {
    this.log = { start: performance.now(), client: ex.client, method: ex.head.method, target: ex.head.target };
  }

  reply(status: number, body: string, decision = 'error'): void {
    this.log.decision ??= decision;
    this.ex.reply(status, body, VIA);
    logEnd(this.rt, this.log, status, this.ex.bytesIn, this.bytesOut);
  }

  start(r: Route, t: AbsoluteUrl): void {
    const log = this.log;
    if (!r.ok) {
      log.rule = r.decision?.rule?.text;
      return r.status === 403 ? this.reply(403, denialText(r.decision!), 'deny') : this.reply(502, `${r.reason}\n`);
    }
    log.decision = 'allow';
    log.rule = r.decision.rule?.text ?? '*';
    this.t = t;
    this.addresses = r.addresses;
    this.headers = requestHeaders(this.ex.head.headers, t.authority);
    this.ex.proceed();
    this.dispatch();
  }

  private dispatch(): void {
    const a = this.addresses[this.tried]!;
    const origin = `http://${a.family === 6 ? `[${a.address}]` : a.address}:${this.t!.port}`;
    this.log.upstream = origin.slice(7);
    this.agent.dispatch({
      origin, path: this.t!.path, method: this.ex.head.method, headers: this.headers,
      // undici takes async iterables as bodies (writeIterable) and frames them
      // itself; its types omit them.
      body: this.ex.body as unknown as Readable | null,
      // Upstream errors are answered to the client (or retried here on the
      // next address when nothing was sent), never retried by undici.
      idempotent: false, blocking: false, upgrade: null,
    }, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.ex.onGone(() => controller.abort(new Error('client went away')));
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, h: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (status < 200) return; // 1xx interim responses are not relayed
    this.status = status;
    this.ex.respond(status, statusMessage, responseHeaders(h));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytesOut += chunk.length;
    if (!this.ex.write(chunk)) {
      controller.pause();
      this.ex.onDrain(() => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.ex.end();
    logEnd(this.rt, this.log, this.status, this.ex.bytesIn, this.bytesOut);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // A connect failure sent nothing: a request without a body can go to the
    // next allowed address, as CONNECT does.
    if (CONNECT_FAILURES.has(code) && !this.ex.body && !this.ex.headersSent && this.tried + 1 < Math.min(this.addresses.length, MAX_ATTEMPTS)) {
      if (this.rt.debug) this.rt.logger.debug({ client: this.log.client, target: this.log.target, upstream: this.log.upstream, error: code }, 'connect failed');
      this.tried++;
      return this.dispatch();
    }
    const up = this.log.upstream;
    if (this.ex.headersSent) { this.ex.abort(); return logEnd(this.rt, this.log, this.status, this.ex.bytesIn, this.bytesOut); }
    if (code === 'UND_ERR_CONNECT_TIMEOUT') return this.reply(504, `connect to ${up} timed out\n`);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') return this.reply(504, `${up} did not answer in time\n`);
    this.reply(502, `${up}: ${code || err.message}\n`);
  }
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Client headers minus hop-by-hop ones (and those the Connection header names), plus Via; and whether a body follows. */
function requestHeaders(raw: readonly string[], authority: string): string[] {
  let named: string[] | undefined;
  let hasHost = false, via: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (k === 'connection') named = raw[i + 1]!.toLowerCase().split(',').map((s) => s.trim());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!, lk = k.toLowerCase();
    if (HOP.has(lk) || REQUEST_ONLY.has(lk) || (named && named.includes(lk))) continue;
    if (lk === 'via') { via = via ? `${via}, ${raw[i + 1]}` : raw[i + 1]; continue; }
    if (lk === 'host') hasHost = true;
    out.push(k, raw[i + 1]!);
  }
  if (!hasHost) out.push('host', authority);
  out.push('via', via ? `${via}, ${VIA}` : VIA);
  return out;
}

function responseHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = typeof h.connection === 'string' ? h.connection.toLowerCase().split(',').map((s) => s.trim()) : undefined;
  const out: Record<string, string | string[]> = {};
  for (const k in h) {
    const v = h[k];
    if (v === undefined || HOP.has(k) || (named && named.includes(k))) continue;
    out[k] = v;
  }
  const via = out.via;
  out.via = via ? `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}` : VIA;
  return out;
}
