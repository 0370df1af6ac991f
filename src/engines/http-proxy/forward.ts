/**
 * Plain HTTP in absolute form, forwarded with undici over pooled keep-alive
 * connections. The pool is keyed by the address the policy allowed (origin
 * `http://IP:port`), never by name, so undici has nothing to resolve: the
 * request goes exactly where the decision said. The client's Host header is
 * kept. Bodies stream both ways with backpressure (pause/resume).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { denialText } from './policy.js';
import { MAX_ATTEMPTS } from './connect.js';
import type { Address } from '../../dns/lookup.js';
import { route, type Route } from './route.js';
import type { Runtime } from './runtime.js';
import { hostText, parseAbsoluteUrl, type AbsoluteUrl } from './target.js';
import { clientAddress, logEnd, type RequestLog } from './logline.js';

/** Hop-by-hop headers (RFC 9110 7.6.1), plus the proxy's own. Lower-case. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/**
 * Not forwarded either: `expect: 100-continue` was answered to the client by
 * node:http already (the body is on its way), and undici refuses the header.
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

export function handleRequest(rt: Runtime, agent: Agent, req: IncomingMessage, res: ServerResponse): void | Promise<void> {
  const url = req.url ?? '';
  const relay = new Relay(rt, agent, req, res);
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
  private bytesIn = 0;
  private bytesOut = 0;
  private t: AbsoluteUrl | undefined;
  private addresses: readonly Address[] = [];
  private tried = 0;
  private hasBody = false;
  private headers: string[] = [];

  constructor(private readonly rt: Runtime, private readonly agent: Agent, private readonly req: IncomingMessage, private readonly res: ServerResponse) {
    this.log = { start: performance.now(), client: clientAddress(req.socket), method: req.method ?? '?', target: req.url ?? '' };
  }

  reply(status: number, body: string, decision = 'error'): void {
    const res = this.res;
    this.log.decision ??= decision;
    if (!res.headersSent) {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), via: VIA });
      res.end(body);
    } else res.destroy();
    logEnd(this.rt, this.log, status, this.bytesIn, this.bytesOut);
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
    const h = requestHeaders(this.req.rawHeaders, t.authority);
    this.headers = h.headers;
    this.hasBody = h.hasBody;
    this.dispatch();
  }

  private dispatch(): void {
    const a = this.addresses[this.tried]!;
    const origin = `http://${a.family === 6 ? `[${a.address}]` : a.address}:${this.t!.port}`;
    this.log.upstream = origin.slice(7);
    this.agent.dispatch({
      origin, path: this.t!.path, method: this.req.method!, headers: this.headers,
      // undici takes async iterables as bodies (writeIterable); its types omit them.
      body: this.hasBody ? (this.countedBody() as unknown as Readable) : null,
      // Upstream errors are answered to the client (or retried here on the
      // next address when nothing was sent), never retried by undici.
      idempotent: false, blocking: false, upgrade: null,
    }, this);
  }

  /**
   * The request body as undici reads it, counted on the way. A 'data'
   * listener would count too, but it starts the body flowing before undici
   * is connected and reading: whatever arrived meanwhile was lost.
   */
  private async *countedBody(): AsyncGenerator<Buffer> {
    for await (const chunk of this.req as AsyncIterable<Buffer>) {
      this.bytesIn += chunk.length;
      yield chunk;
    }
  }

  onRequestStart(): void {}

  onResponseStart(controller: Dispatcher.DispatchController, status: number, h: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (status < 200) return; // 1xx interim responses are not relayed
    const res = this.res;
    res.writeHead(status, statusMessage, responseHeaders(h));
    res.once('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')); });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.bytesOut += chunk.length;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.res.end();
    logEnd(this.rt, this.log, this.res.statusCode, this.bytesIn, this.bytesOut);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // A connect failure sent nothing: a request without a body can go to the
    // next allowed address, as CONNECT does.
    if (CONNECT_FAILURES.has(code) && !this.hasBody && !this.res.headersSent && this.tried + 1 < Math.min(this.addresses.length, MAX_ATTEMPTS)) {
      if (this.rt.debug) this.rt.logger.debug({ client: this.log.client, target: this.log.target, upstream: this.log.upstream, error: code }, 'connect failed');
      this.tried++;
      return this.dispatch();
    }
    const up = this.log.upstream;
    if (code === 'UND_ERR_CONNECT_TIMEOUT') return this.reply(504, `connect to ${up} timed out\n`);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') return this.reply(504, `${up} did not answer in time\n`);
    this.reply(502, `${up}: ${code || err.message}\n`);
  }
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Client headers minus hop-by-hop ones (and those the Connection header names), plus Via; and whether a body follows. */
function requestHeaders(raw: string[], authority: string): { headers: string[]; hasBody: boolean } {
  let named: string[] | undefined;
  let hasHost = false, via: string | undefined;
  let hasBody = false;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (k === 'connection') named = raw[i + 1]!.toLowerCase().split(',').map((s) => s.trim());
    // llhttp already refused a request with both or with a bad length.
    else if (k === 'content-length') hasBody = raw[i + 1]!.trim() !== '0';
    else if (k === 'transfer-encoding') hasBody = true;
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
  return { headers: out, hasBody };
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
