/**
 * Queries to the upstream nameservers. UDP: a few long-lived sockets per
 * server on random ports, connected (the kernel drops datagrams from anyone
 * else, and a send needs no address lookup), each query with an ID of its own
 * (the client's is restored by the caller); one sweep timer for every
 * deadline instead of a timer per query. TCP: one connection per query (TCP
 * DNS is the truncation fallback; rare).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export interface Server { readonly address: string; readonly port: number }

/** What waits for an upstream answer; `answer` carries our ID (the caller restores the client's). */
export interface UpstreamClient {
  upstreamDone(err: UpstreamError | Error | undefined, answer?: Buffer): void;
}

export class UpstreamError extends Error {
  constructor(message: string, readonly code: 'ETIMEOUT' | 'ECLOSED' | 'EUPSTREAM') { super(message); }
}

interface Pending {
  readonly msg: Buffer;
  readonly client: UpstreamClient;
  sock: number;
  deadline: number;
  attempt: number;
}

const SWEEP_MS = 50;

/** Unpredictable 16-bit IDs, drawn from a pool of random bytes (one syscall per 4096 IDs). */
class Ids {
  private pool = randomBytes(8192);
  private at = 0;
  next(): number {
    if (this.at >= this.pool.length) { this.pool = randomBytes(8192); this.at = 0; }
    const v = this.pool.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
}

export class UdpUpstream {
  // socks[server][i]: each connected to its server.
  private readonly socks: dgram.Socket[][] = [];
  // Insertion order is deadline order (one timeout for all): the sweep stops
  // at the first entry not yet due.
  private readonly pending = new Map<number, Pending>();
  private readonly sweep: NodeJS.Timeout;
  private readonly ids = new Ids();
  private readonly ready: Promise<void>;
  private next = 0;
  private closed = false;
  /** Answers that matched no query (late, duplicate or spoofed). */
  strays = 0;

  constructor(private readonly servers: readonly Server[], private readonly o: { sockets: number; timeoutMs: number; attempts: number }) {
    if (servers.length === 0) throw new Error('dns view: no upstream nameservers');
    const connecting: Promise<void>[] = [];
    servers.forEach((srv, si) => {
      const list: dgram.Socket[] = [];
      for (let i = 0; i < o.sockets; i++) {
        const s = dgram.createSocket({ type: net.isIPv6(srv.address) ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
        s.on('message', (m) => this.onMessage(si, i, m));
        s.on('error', () => { /* ICMP errors (nothing listens): the query times out and moves on */ });
        connecting.push(new Promise((r) => s.connect(srv.port, srv.address, () => r())));
        list.push(s);
      }
      this.socks.push(list);
    });
    this.ready = Promise.all(connecting).then(() => {});
    this.sweep = setInterval(() => this.expire(), SWEEP_MS);
    this.sweep.unref();
  }

  /** Resolves once every socket is connected. */
  start(): Promise<void> { return this.ready; }

  get inFlight(): number { return this.pending.size; }

  /** Sends `msg` (its first two bytes are overwritten with our ID). */
  query(msg: Buffer, client: UpstreamClient): void {
    if (this.closed) { client.upstreamDone(new UpstreamError('upstream closed', 'ECLOSED')); return; }
    this.send({ msg, client, sock: 0, deadline: 0, attempt: 0 });
  }

  private send(p: Pending): void {
    let id = this.ids.next();
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    p.msg.writeUInt16BE(id, 0);
    p.sock = this.next = (this.next + 1) % this.o.sockets;
    p.deadline = Date.now() + this.o.timeoutMs;
    this.pending.set(id, p);
    this.socks[p.attempt % this.servers.length]![p.sock]!.send(p.msg);
  }

  private onMessage(server: number, sock: number, m: Buffer): void {
    if (m.length < 12) { this.strays++; return; }
    const id = m.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p || p.sock !== sock || p.attempt % this.servers.length !== server) { this.strays++; return; }
    this.pending.delete(id);
    p.client.upstreamDone(undefined, m);
  }

  private expire(): void {
    const now = Date.now();
    const retry: Pending[] = [];
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      // Next attempt on the next server (glibc's rotation), within the bound.
      if (++p.attempt < this.o.attempts) retry.push(p);
      else p.client.upstreamDone(new UpstreamError(`no answer from ${this.servers.map((x) => x.address).join(', ')}`, 'ETIMEOUT'));
    }
    for (const p of retry) this.send(p);
  }

  /** Fails every pending query at once and closes the sockets. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.client.upstreamDone(new UpstreamError('upstream closed', 'ECLOSED'));
    for (const s of this.socks.flat()) s.close();
  }
}

/** One query over TCP (RFC 7766 framing), on a connection of its own; returns a cancel function. */
export function tcpQuery(servers: readonly Server[], msg: Buffer, timeoutMs: number, client: UpstreamClient, attempt = 0): () => void {
  const server = servers[attempt % servers.length]!;
  const id = randomBytes(2).readUInt16BE(0);
  msg.writeUInt16BE(id, 0);
  const sock = net.connect({ host: server.address, port: server.port, noDelay: true });
  let buf: Buffer | undefined;
  let done = false;
  let cancel: () => void;
  const finish = (err?: Error, answer?: Buffer) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    // A refused or reset connection gets one more try on the next server.
    if (err && !(err instanceof UpstreamError) && attempt + 1 < Math.min(2, servers.length)) {
      cancel = tcpQuery(servers, msg, timeoutMs, client, attempt + 1);
      return;
    }
    client.upstreamDone(err, answer);
  };
  const timer = setTimeout(() => finish(new UpstreamError(`no tcp answer from ${server.address}`, 'ETIMEOUT')), timeoutMs);
  sock.on('error', (e) => finish(e));
  sock.on('end', () => finish(new UpstreamError(`${server.address} closed before answering`, 'EUPSTREAM')));
  const head = Buffer.allocUnsafe(2);
  head.writeUInt16BE(msg.length);
  sock.write(Buffer.concat([head, msg]));
  sock.on('data', (d: Buffer) => {
    buf = buf ? Buffer.concat([buf, d]) : d;
    if (buf.length < 2) return;
    const len = buf.readUInt16BE(0);
    if (buf.length < 2 + len) return;
    const answer = buf.subarray(2, 2 + len);
    if (len < 12 || answer.readUInt16BE(0) !== id) finish(new UpstreamError('tcp answer with a foreign id', 'EUPSTREAM'));
    else finish(undefined, answer);
  });
  cancel = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    client.upstreamDone(new UpstreamError('upstream closed', 'ECLOSED'));
  };
  return () => cancel();
}
