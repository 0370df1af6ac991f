/**
 * The listener and its limits. A plain net.Server accepts connections so the
 * connection cap and the client allow-list act before any HTTP parsing, with a
 * clean answer (503 / 403) instead of a silent reset; accepted sockets are
 * handed to node:http, whose C parser (llhttp) enforces the header-size limit
 * (431) and the header-read deadline against slowloris (408).
 */
import http from 'node:http';
import net from 'node:net';
import { cidrContains, ipFamily, type Cidr } from '../../config/ip.js';
import { handleConnect } from './connect.js';
import { TUNNEL_HWM } from './pump.js';
import { createUpstream, handleRequest } from './forward.js';
import { clientAddress } from './logline.js';
import type { Runtime } from './runtime.js';

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

export async function listen(rt: Runtime, opts: { host: string; port: number; clients?: readonly Cidr[] }): Promise<Listener> {
  const agent = createUpstream(rt);
  const L = rt.limits;
  const server = http.createServer({
    maxHeaderSize: L.maxHeaderBytes,
    headersTimeout: L.headersTimeoutMs,
    // Bodies may be long uploads: only idleness ends them (socket timeout below).
    requestTimeout: 0,
    keepAliveTimeout: L.keepAliveTimeoutMs,
    // How often node checks the headers deadline; the default (30 s) would let
    // a slowloris client hold a slot for far longer than the configured limit.
    connectionsCheckingInterval: Math.min(1000, L.headersTimeoutMs),
    noDelay: true,
    requireHostHeader: false,
  });
  server.timeout = L.idleTimeoutMs;
  server.on('request', (req, res) => {
    try {
      const p = handleRequest(rt, agent, req, res);
      if (p) p.catch((e: unknown) => fail(rt, res, e));
    } catch (e) { fail(rt, res, e); }
  });
  server.on('connect', (req, socket, head) => {
    handleConnect(rt, req, socket, head).catch((e) => { rt.logger.error({ err: e }, 'CONNECT failed'); socket.destroy(); });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (rt.debug) rt.logger.debug({ client: clientAddress(socket), code: err.code }, 'client error');
    if (socket.writable && !(socket as net.Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    }
    socket.destroySoon();
  });

  let open = 0;
  const sockets = new Set<net.Socket>();
  const front = net.createServer({ noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HWM }, (s) => {
    s.on('error', () => {});
    if (open >= L.maxConnections) return reject(s, '503 Service Unavailable', 'too many connections\n');
    if (opts.clients && !clientAllowed(opts.clients, clientAddress(s))) return reject(s, '403 Forbidden', 'denied: client address not allowed\n');
    open++;
    sockets.add(s);
    s.once('close', () => { open--; sockets.delete(s); });
    server.emit('connection', s);
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen({ host: opts.host, port: opts.port, backlog: 1024 }, () => { front.off('error', reject); resolve(); });
  });
  const port = (front.address() as net.AddressInfo).port;
  // node:http starts its header-deadline checks (headersTimeout) on its own
  // 'listening' event; it never listens itself here, so tell it we are.
  server.emit('listening');
  return {
    port,
    async close() {
      await new Promise<void>((r) => { front.close(() => r()); for (const s of sockets) s.destroy(); });
      server.close(() => {});
      await agent.close();
    },
  };
}

function reject(s: net.Socket, status: string, body: string): void {
  s.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  s.destroySoon();
}

function clientAllowed(clients: readonly Cidr[], address: string): boolean {
  const fam = ipFamily(address);
  return fam !== 0 && clients.some((c) => cidrContains(c, address, fam));
}

function fail(rt: Runtime, res: http.ServerResponse, e: unknown): void {
  rt.logger.error({ err: e }, 'request failed');
  if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('internal error\n'); } else res.destroy();
}
