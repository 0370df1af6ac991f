/**
 * The listener and its limits. Connections are accepted on the native fast
 * path (fast.ts) when EGRESS_FASTPATH allows it, else on a plain net.Server;
 * either way the connection cap and the client allow-list act before any
 * parsing (gate.ts), and each client connection that is not a fast-path
 * tunnel is served by front.ts (request heads, bodies, deadlines).
 */
import net from 'node:net';
import type { Cidr } from '../../config/ip.js';
import { useFastpath } from '../fastpath/index.js';
import { handleConnect } from './connect.js';
import { listenFast } from './fast.js';
import { createUpstream, handleRequest } from './forward.js';
import { Fronts, type Handlers } from './front.js';
import { Gate, type Acceptor } from './gate.js';
import { clientAddress } from './logline.js';
import { TUNNEL_HWM } from './pump.js';
import type { Runtime } from './runtime.js';

export interface Listener {
  readonly port: number;
  /** How connections are accepted: 'fastpath' (native) or 'net.Socket'. */
  readonly accept: Acceptor['path'];
  /** Drain: stop accepting, end idle keep-alive connections, resolve once every connection and tunnel has ended. */
  close(): Promise<void>;
  /** Cut every open connection now. */
  destroy(): void;
}

export async function listen(rt: Runtime, opts: { host: string; port: number; clients?: readonly Cidr[] }): Promise<Listener> {
  const agent = createUpstream(rt);
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

  const gate = new Gate(rt, opts.clients);
  // The one 'close' listener of a served connection is the front's; it reports here.
  const fronts = new Fronts(rt, handlers, (s) => gate.closed(s.bytesRead, s.bytesWritten));
  // useFastpath throws (one line) when EGRESS_FASTPATH=1 and the addon is not built.
  const acceptor = useFastpath(rt.fastpath) ? await listenFast(rt, gate, fronts, opts.host, opts.port) : await listenNet(gate, fronts, opts.host, opts.port);
  return {
    port: acceptor.port,
    accept: acceptor.path,
    async close() {
      rt.draining = true;
      acceptor.stop();
      fronts.drain();
      await gate.idle();
      acceptor.forget();
      fronts.close();
      await agent.close();
    },
    destroy() {
      acceptor.stop();
      fronts.close();
      acceptor.destroy();
      fronts.destroy();
      acceptor.forget();
      void agent.destroy();
    },
  };
}

async function listenNet(gate: Gate, fronts: Fronts, host: string, port: number): Promise<Acceptor> {
  const server = net.createServer({ noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HWM }, (s) => {
    s.on('error', ignore);
    const refusal = gate.admit(gate.clients ? clientAddress(s) : '');
    if (refusal) {
      s.end(refusal);
      s.destroySoon();
      return;
    }
    fronts.serve(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 1024 }, () => { server.off('error', reject); resolve(); });
  });
  return {
    path: 'net.Socket',
    port: (server.address() as net.AddressInfo).port,
    stop() { server.close(); },
    destroy() {},
    forget() {},
  };
}

function ignore(): void {}

function fail(rt: Runtime, e: unknown, abort: () => void): void {
  rt.logger.error({ err: e }, 'request failed');
  abort();
}
