/**
 * The listener and its limits. Connections are accepted on a plain
 * net.Server so the connection cap and the client allow-list act before any
 * parsing, with a clean answer (503 / 403) instead of a silent reset; each
 * accepted socket is served by front.ts (request heads, bodies, deadlines).
 */
import net from 'node:net';
import { cidrContains, ipFamily, type Cidr } from '../../config/ip.js';
import { handleConnect } from './connect.js';
import { createUpstream, handleRequest } from './forward.js';
import { Fronts, type Handlers } from './front.js';
import { closingReply } from './http1.js';
import { clientAddress } from './logline.js';
import { TUNNEL_HWM } from './pump.js';
import type { Runtime } from './runtime.js';

export interface Listener {
  readonly port: number;
  /** Drain: stop accepting, end idle keep-alive connections, resolve once every connection and tunnel has ended. */
  close(): Promise<void>;
  /** Cut every open connection now. */
  destroy(): void;
}

export async function listen(rt: Runtime, opts: { host: string; port: number; clients?: readonly Cidr[] }): Promise<Listener> {
  const agent = createUpstream(rt);
  const L = rt.limits;
  const handlers: Handlers = {
    request(ex) {
      try {
        const p = handleRequest(rt, agent, ex);
        if (p) p.catch((e: unknown) => fail(rt, e, () => ex.abort()));
      } catch (e) { fail(rt, e, () => ex.abort()); }
    },
    connect(target, sock, head, client, host) {
      try {
        handleConnect(rt, target, sock, head, client, host);
      } catch (e) { fail(rt, e, () => sock.destroy()); }
    },
  };

  let open = 0;
  const st = rt.stats;
  let drained: (() => void) | undefined;
  // The one 'close' listener of a served connection is the front's; it reports here.
  const fronts = new Fronts(rt, handlers, (s) => {
    open--;
    st.active = open;
    st.bytesIn += s.bytesRead;
    st.bytesOut += s.bytesWritten;
    if (open === 0) drained?.();
  });
  const front = net.createServer({ noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HWM }, (s) => {
    s.on('error', ignore);
    if (open >= L.maxConnections) { st.refused.limit++; return reject(s, 503, 'too many connections\n'); }
    if (opts.clients && !clientAllowed(opts.clients, clientAddress(s))) { st.refused.client++; return reject(s, 403, 'denied: client address not allowed\n'); }
    open++;
    st.accepted++;
    st.active = open;
    fronts.serve(s);
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen({ host: opts.host, port: opts.port, backlog: 1024 }, () => { front.off('error', reject); resolve(); });
  });
  const port = (front.address() as net.AddressInfo).port;
  return {
    port,
    async close() {
      rt.draining = true;
      front.close();
      fronts.drain();
      if (open > 0) await new Promise<void>((r) => { drained = r; });
      fronts.close();
      await agent.close();
    },
    destroy() {
      front.close();
      fronts.close();
      fronts.destroy();
      void agent.destroy();
    },
  };
}

function ignore(): void {}

function reject(s: net.Socket, status: number, body: string): void {
  s.end(closingReply(status, body));
  s.destroySoon();
}

function clientAllowed(clients: readonly Cidr[], address: string): boolean {
  const fam = ipFamily(address);
  return fam !== 0 && clients.some((c) => cidrContains(c, address, fam));
}

function fail(rt: Runtime, e: unknown, abort: () => void): void {
  rt.logger.error({ err: e }, 'request failed');
  abort();
}
