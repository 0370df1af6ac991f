/**
 * One DNS question to one nameserver: UDP first, TCP when the answer comes
 * back truncated (a name with many addresses must not lose some of them).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';

export type RecordType = 'A' | 'AAAA';

export interface Answer {
  /** Addresses from the answer section of the requested type. */
  readonly addresses: string[];
  /** Minimum TTL over those records (seconds); undefined when there are none. */
  readonly ttl: number | undefined;
}

export class DnsError extends Error {
  constructor(message: string, readonly rcode?: string) { super(message); }
}

const TC = dnsPacket.TRUNCATED_RESPONSE;

function encodeQuery(id: number, name: string, type: RecordType): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

function toAnswer(p: dnsPacket.Packet, type: RecordType): Answer {
  const rcode = (p as { rcode?: string }).rcode ?? 'NOERROR';
  // NXDOMAIN is an answer ("no addresses"), not a server failure to retry elsewhere.
  if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') throw new DnsError(`rcode ${rcode}`, rcode);
  const records = (p.answers ?? []).filter((a) => a.type === type) as Array<{ data: string; ttl?: number }>;
  const addresses = records.map((a) => a.data);
  const ttl = records.length ? Math.min(...records.map((a) => a.ttl ?? 0)) : undefined;
  return { addresses, ttl };
}

export function queryUdp(server: string, name: string, type: RecordType, timeoutMs: number, port = 53): Promise<{ answer: Answer; truncated: boolean }> {
  const host = server;
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const sock = dgram.createSocket(net.isIPv6(host.replace(/%.*$/, '')) ? 'udp6' : 'udp4');
    let settled = false;
    const done = (err: Error | null, v?: { answer: Answer; truncated: boolean }) => {
      if (settled) return; // a failed connect may also raise 'error'
      settled = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err); else resolve(v!);
    };
    const timer = setTimeout(() => done(new DnsError(`timeout after ${timeoutMs} ms (udp ${host})`)), timeoutMs);
    sock.on('error', (e) => done(e));
    sock.on('message', (msg, rinfo) => {
      // Ignore stray datagrams: only the server we asked, with our id.
      if (rinfo.port !== port) return;
      let p: dnsPacket.Packet;
      try { p = dnsPacket.decode(msg); } catch { return; }
      if (p.id !== id) return;
      const truncated = ((p.flags ?? 0) & TC) !== 0;
      try { done(null, { answer: truncated ? { addresses: [], ttl: undefined } : toAnswer(p, type), truncated }); } catch (e) { done(e as Error); }
    });
    // connect fails at once without a route (ENETUNREACH): report it, do not send unconnected.
    sock.connect(port, host, (err?: Error) => (err ? done(err) : sock.send(encodeQuery(id, name, type))));
  });
}

export function queryTcp(server: string, name: string, type: RecordType, timeoutMs: number, port = 53): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const id = randomInt(0, 65536);
    const sock = net.connect({ host: server, port });
    let buf = Buffer.alloc(0);
    const done = (err: Error | null, v?: Answer) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(v!);
    };
    const timer = setTimeout(() => done(new DnsError(`timeout after ${timeoutMs} ms (tcp ${server})`)), timeoutMs);
    sock.on('error', (e) => done(e));
    sock.on('connect', () => {
      const q = encodeQuery(id, name, type);
      const head = Buffer.alloc(2);
      head.writeUInt16BE(q.length);
      sock.write(Buffer.concat([head, q]));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
      try {
        const p = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        if (p.id !== id) throw new DnsError('tcp answer with a foreign id');
        done(null, toAnswer(p, type));
      } catch (e) { done(e as Error); }
    });
    sock.on('end', () => done(new DnsError(`tcp ${server} closed before answering`)));
  });
}

/** UDP, then TCP to the same server if the UDP answer was truncated. */
export async function queryServer(server: string, name: string, type: RecordType, timeoutMs: number, port = 53): Promise<Answer & { tcp: boolean }> {
  const u = await queryUdp(server, name, type, timeoutMs, port);
  if (!u.truncated) return { ...u.answer, tcp: false };
  return { ...(await queryTcp(server, name, type, timeoutMs, port)), tcp: true };
}
