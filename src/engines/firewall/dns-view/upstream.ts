/**
 * Queries to the upstream nameservers. UDP: a few long-lived sockets on
 * random ports, each query with an ID of its own (the client's is restored
 * by the caller), answers matched on server, socket and ID; one sweep timer
 * for every deadline instead of a timer per query. TCP: one connection per
 * query (TCP DNS is the truncation fallback; rare).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';

export interface Server { readonly address: string; readonly port: number }

/** err is undefined on success; the answer carries our ID (the caller restores the client's). */
export type Reply = (err: Error | undefined, answer?: Buffer) => void;

export class UpstreamError extends Error {
  constructor(message: string, readonly code: 'ETIMEOUT' | 'ECLOSED' | 'EUPSTREAM') { super(message); }
}

interface Pending {
  readonly msg: Buffer;
  readonly reply: Reply;
  sock: number;
  server: number;
  deadline: number;
  attempt: number;
}

const SWEEP_MS = 50;

export class UdpUpstream {
  // One set of sockets per address family the servers use.
  private readonly socks: Record<4 | 6, dgram.Socket[]> = { 4: [], 6: [] };
  // Insertion order is deadline order (one timeout for all): the sweep stops
  // at the first entry not yet due.
  private readonly pending = new Map<number, Pending>();
  private readonly sweep: NodeJS.Timeout;
  private next = 0;
  private closed = false;
  /** Answers that matched no query (late, duplicate or spoofed). */
  strays = 0;

  constructor(private readonly servers: readonly Server[], private readonly o: { sockets: number; timeoutMs: number; attempts: number }) {
    if (servers.length === 0) throw new Error('dns view: no upstream nameservers');
    for (const fam of [4, 6] as const) {
      if (!servers.some((s) => net.isIP(s.address) === fam)) continue;
      for (let i = 0; i < o.sockets; i++) {
        const s = dgram.createSocket({ type: fam === 4 ? 'udp4' : 'udp6', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
        s.on('message', (m, r) => this.onMessage(i, m, r));
        s.on('error', () => { /* ICMP errors: the query times out and moves on */ });
        s.bind(0);
        this.socks[fam].push(s);
      }
    }
    this.sweep = setInterval(() => this.expire(), SWEEP_MS);
    this.sweep.unref();
  }

  get inFlight(): number { return this.pending.size; }

  /** Sends `msg` (its first two bytes are overwritten with our ID). */
  query(msg: Buffer, reply: Reply): void {
    if (this.closed) { reply(new UpstreamError('upstream closed', 'ECLOSED')); return; }
    const p: Pending = { msg, reply, sock: 0, server: 0, deadline: 0, attempt: 0 };
    this.send(p);
  }

  private send(p: Pending): void {
    let id = randomInt(0, 65536);
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    p.msg.writeUInt16BE(id, 0);
    p.server = p.attempt % this.servers.length;
    const s = this.servers[p.server]!;
    p.sock = this.next = (this.next + 1) % this.o.sockets;
    p.deadline = Date.now() + this.o.timeoutMs;
    this.pending.set(id, p);
    this.socks[net.isIP(s.address) === 6 ? 6 : 4][p.sock]!.send(p.msg, s.port, s.address);
  }

  private onMessage(sock: number, m: Buffer, r: dgram.RemoteInfo): void {
    if (m.length < 12) { this.strays++; return; }
    const id = m.readUInt16BE(0);
    const p = this.pending.get(id);
    const s = p && this.servers[p.server];
    if (!p || !s || p.sock !== sock || r.port !== s.port || r.address !== s.address) { this.strays++; return; }
    this.pending.delete(id);
    p.reply(undefined, m);
  }

  private expire(): void {
    const now = Date.now();
    const retry: Pending[] = [];
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(id);
      // Next attempt on the next server (glibc's rotation), within the bound.
      if (++p.attempt < this.o.attempts) retry.push(p);
      else p.reply(new UpstreamError(`no answer from ${this.servers.map((x) => x.address).join(', ')}`, 'ETIMEOUT'));
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
    for (const p of all) p.reply(new UpstreamError('upstream closed', 'ECLOSED'));
    for (const s of [...this.socks[4], ...this.socks[6]]) s.close();
  }
}

/** One query over TCP (RFC 7766 framing), on a connection of its own. */
export function tcpQuery(servers: readonly Server[], msg: Buffer, timeoutMs: number, reply: Reply, attempt = 0): () => void {
  const server = servers[attempt % servers.length]!;
  const id = randomInt(0, 65536);
  msg.writeUInt16BE(id, 0);
  const sock = net.connect({ host: server.address, port: server.port, noDelay: true });
  let buf: Buffer | undefined;
  let done = false;
  const finish = (err?: Error, answer?: Buffer) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    // A refused or reset connection gets one more try on the next server.
    if (err && !(err instanceof UpstreamError) && attempt + 1 < Math.min(2, servers.length)) {
      cancel = tcpQuery(servers, msg, timeoutMs, reply, attempt + 1);
      return;
    }
    reply(err, answer);
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
  let cancel = () => { if (!done) { done = true; clearTimeout(timer); sock.destroy(); reply(new UpstreamError('upstream closed', 'ECLOSED')); } };
  return () => cancel();
}
