/**
 * Plain HTTP in absolute form, forwarded with undici over pooled keep-alive
 * connections. The pool is keyed by the address the policy allowed (origin
 * `http://IP:port`), never by name, so undici has nothing to resolve: the
 * request goes exactly where the decision said. The client's Host header is
 * kept. Bodies stream both ways with backpressure (pause/resume).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Agent, type Dispatcher } from 'undici';
import { denialText } from './policy.js';
import { route } from './route.js';
import type { Runtime } from './runtime.js';
import { hostText, parseAbsoluteUrl } from './target.js';
import { clientAddress, logEnd, type RequestLog } from './logline.js';

/** Hop-by-hop headers (RFC 9110 7.6.1), plus the proxy's own. Lower-case. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
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

export async function handleRequest(rt: Runtime, agent: Agent, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '';
  const log: RequestLog = { start: performance.now(), client: clientAddress(req.socket), method: req.method ?? '?', target: url };
  let bytesIn = 0, bytesOut = 0;
  const reply = (status: number, body: string, decision = 'error') => {
    log.decision ??= decision;
    if (!res.headersSent) {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), via: VIA });
      res.end(body);
    } else res.destroy();
    logEnd(rt, log, status, bytesIn, bytesOut);
  };
  if (url.startsWith('/')) return reply(400, 'this is a proxy: send absolute-form requests (http://host/path) or CONNECT\n');
  const t = parseAbsoluteUrl(url);
  if (!t) return reply(400, 'bad request target, expected http://host[:port]/path\n');
  log.target = `${hostText(t.host)}:${t.port}${t.path}`;
  const r = await route(rt, t);
  if (!r.ok) {
    log.rule = r.decision?.rule?.text;
    return r.status === 403 ? reply(403, denialText(r.decision!), 'deny') : reply(502, `${r.reason}\n`);
  }
  log.decision = 'allow';
  log.rule = r.decision.rule?.text ?? '*';
  const origin = `http://${r.family === 6 ? `[${r.address}]` : r.address}:${t.port}`;
  log.upstream = origin.slice(7);

  const headers = requestHeaders(req.rawHeaders, t.authority);
  const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
  if (hasBody) req.on('data', (c: Buffer) => { bytesIn += c.length; });

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart() {},
    onResponseStart(controller, status, h, statusMessage) {
      if (status < 200) return; // 1xx interim responses are not relayed
      res.writeHead(status, statusMessage, responseHeaders(h));
      res.on('drain', () => controller.resume());
      res.once('close', () => { if (!res.writableFinished) controller.abort(new Error('client went away')); });
    },
    onResponseData(controller, chunk) {
      bytesOut += chunk.length;
      if (!res.write(chunk)) controller.pause();
    },
    onResponseEnd() {
      res.end();
      logEnd(rt, log, res.statusCode, bytesIn, bytesOut);
    },
    onResponseError(_c, err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'UND_ERR_CONNECT_TIMEOUT') return reply(504, `connect to ${log.upstream} timed out\n`);
      if (code === 'UND_ERR_HEADERS_TIMEOUT') return reply(504, `${log.upstream} did not answer in time\n`);
      reply(502, `${log.upstream}: ${(err as NodeJS.ErrnoException).code ?? err.message}\n`);
    },
  };
  agent.dispatch({
    origin, path: t.path, method: req.method!, headers,
    body: hasBody ? req : null,
    // Upstream errors are answered to the client, not retried behind its back.
    idempotent: false, blocking: false, upgrade: null,
  }, handler);
}

/** Client headers minus hop-by-hop ones (and those the Connection header names), plus Via. */
function requestHeaders(raw: string[], authority: string): string[] {
  let named: string[] | undefined;
  let hasHost = false, via: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (k === 'connection') named = raw[i + 1]!.toLowerCase().split(',').map((s) => s.trim());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!, lk = k.toLowerCase();
    if (HOP.has(lk) || (named && named.includes(lk))) continue;
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
