/**
 * CONNECT tunnels: policy, one TCP connection to the allowed address, then
 * bytes piped both ways. pipe() gives backpressure (a slow reader pauses the
 * fast writer instead of buffering without bound); allowHalfOpen on both
 * sockets lets one direction finish while the other keeps flowing, which
 * protocols such as "send request, shut down writing, read reply" need.
 */
import net from 'node:net';
import { closingReply } from './http1.js';
import { denialText } from './policy.js';
import type { Address } from '../../dns/lookup.js';
import { route } from './route.js';
import type { Runtime } from './runtime.js';
import { hostText } from '../../config/host.js';
import { parseAuthority } from './target.js';
import { downloadTo, TUNNEL_HWM } from './pump.js';
import { logEnd, type RequestLog } from './logline.js';

const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');

export async function handleConnect(rt: Runtime, target: string, sock: net.Socket, head: Buffer, client: string): Promise<void> {
  const log: RequestLog = { start: performance.now(), client, method: 'CONNECT', target };
  sock.setTimeout(0);
  sock.on('error', () => {});
  const t = parseAuthority(target);
  if (!t) return refuse(rt, sock, log, 400, 'bad CONNECT target, expected host:port\n');
  log.target = `${hostText(t.host)}:${t.port}`;
  if (rt.connectPorts && !rt.connectPorts.has(t.port)) return refuse(rt, sock, log, 403, `denied: CONNECT to port ${t.port} is not allowed\n`, 'port');
  const r = await route(rt, t);
  if (!r.ok) {
    log.rule = r.decision?.rule?.text;
    return refuse(rt, sock, log, r.status, r.status === 403 ? denialText(r.decision!) : `${r.reason}\n`, r.status === 403 ? 'deny' : 'error');
  }
  log.decision = 'allow';
  log.rule = r.decision.rule?.text ?? '*';
  if (sock.destroyed) return logEnd(rt, log, 499, 0, 0);
  attempt(rt, sock, log, r.addresses, 0, t.port, head);
}

/** Addresses after the first that are tried when a connect fails. */
export const MAX_ATTEMPTS = 3;

/**
 * Connect to addresses[i]; on failure (refused, unreachable, timed out) try
 * the next allowed address, as a browser would, up to MAX_ATTEMPTS. Each
 * attempt gets the connect timeout. The client hears about the last failure.
 */
function attempt(rt: Runtime, sock: net.Socket, log: RequestLog, addrs: readonly Address[], i: number, port: number, head: Buffer): void {
  const a = addrs[i]!;
  log.upstream = `${a.family === 6 ? `[${a.address}]` : a.address}:${port}`;
  const more = i + 1 < Math.min(addrs.length, MAX_ATTEMPTS);
  const down = downloadTo(sock);
  // highWaterMark is a Duplex option net.Socket passes on; @types/node 20 omits it.
  const up = net.connect({ host: a.address, port, family: a.family, localAddress: rt.localAddress, noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HWM, onread: down.onread } as net.NetConnectOpts);
  const onClientClose = () => { if (up.connecting) { clearTimeout(timer); up.destroy(); } };
  let over = false;
  const failed = (status: number, why: string) => {
    if (over) return;
    over = true;
    clearTimeout(timer);
    sock.off('close', onClientClose);
    up.destroy();
    if (rt.debug) rt.logger.debug({ client: log.client, target: log.target, upstream: log.upstream, error: why }, 'connect failed');
    if (more && !sock.destroyed) return attempt(rt, sock, log, addrs, i + 1, port, head);
    refuse(rt, sock, log, status, status === 504 ? `connect to ${log.upstream} timed out\n` : `connect to ${log.upstream} failed: ${why}\n`, 'error');
  };
  const timer = setTimeout(() => failed(504, 'timed out'), rt.limits.connectTimeoutMs);
  up.once('error', (e: NodeJS.ErrnoException) => failed(502, e.code ?? e.message));
  // The client went away while we were connecting.
  sock.once('close', onClientClose);
  up.once('close', () => down.disarm());
  up.once('connect', () => {
    clearTimeout(timer);
    sock.off('close', onClientClose);
    up.removeAllListeners('error');
    if (sock.destroyed) { up.destroy(); return logEnd(rt, log, 499, 0, 0); }
    pipeTunnel(rt, sock, up, head, log);
  });
}

function pipeTunnel(rt: Runtime, c: net.Socket, up: net.Socket, head: Buffer, log: RequestLog): void {
  c.setNoDelay(true);
  c.write(ESTABLISHED);
  if (head.length > 0) up.write(head);
  c.pipe(up);
  // up -> c is written by the pump (pump.ts); its backpressure: a false return
  // paused reading, the client's drain resumes it; the end is passed on here.
  c.on('drain', () => up.resume());
  up.once('end', () => c.end());
  // Idle: no bytes either way for the limit (each socket resets its own timer).
  const idle = () => { c.destroy(); up.destroy(); };
  c.setTimeout(rt.limits.idleTimeoutMs, idle);
  up.setTimeout(rt.limits.idleTimeoutMs, idle);
  // An error on one side ends the other: no tunnel half-alive forever.
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
  let closed = 0;
  // Tunnel payload only: the client socket had already read the CONNECT
  // request; what followed it (`head`, and anything buffered since) is payload.
  const readBefore = c.bytesRead - head.length - c.readableLength;
  // When one side is closed, the other finishes writing what it has, then closes.
  const done = () => { if (++closed === 2) logEnd(rt, log, 200, c.bytesRead - readBefore, c.bytesWritten - ESTABLISHED.length); };
  c.once('close', () => { up.destroySoon(); done(); });
  up.once('close', () => { c.destroySoon(); done(); });
}

function refuse(rt: Runtime, c: net.Socket, log: RequestLog, status: number, body: string, decision = 'error'): void {
  if (log.status !== undefined) return;
  log.decision ??= decision;
  if (!c.destroyed && c.writable) {
    c.end(closingReply(status, body));
  }
  c.destroySoon();
  logEnd(rt, log, status, 0, 0);
}
