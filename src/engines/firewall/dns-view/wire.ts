/**
 * Just enough of the DNS wire format for a forwarder that relays bytes: the
 * header, the question, and a walk over the answer section for CNAME chains
 * and A/AAAA records. Messages are never re-encoded (the client gets the
 * upstream's bytes, only the ID rewritten), so nothing here can change an
 * answer; a parse failure only means "malformed", never a crash.
 */

export class MalformedError extends Error {}

export const QR = 0x8000;
export const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const OPCODE_MASK = 0x7800;
export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
const HEADER = 12;
const MAX_HOPS = 16;

export interface Question {
  /** As on the wire, dots between labels, no trailing dot; case preserved. */
  readonly name: string;
  readonly type: number;
  readonly cls: number;
  /** Offset just past the question (end of the header + first question). */
  readonly end: number;
}

const bad = (why: string): never => { throw new MalformedError(why); };

/**
 * Reads a (possibly compressed) name at `off`; returns it and the offset after
 * it in the original position. Pointers must point backwards (no loops).
 */
export function readName(buf: Buffer, off: number): { name: string; next: number } {
  let name = '';
  let next = -1;
  let pos = off;
  let limit = off; // a pointer must go strictly before the last label start
  for (let hops = 0; ; ) {
    if (pos >= buf.length) bad('name runs past the message');
    const len = buf[pos]!;
    if (len === 0) { if (next < 0) next = pos + 1; break; }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) bad('truncated pointer');
      const ptr = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (ptr >= limit || ++hops > 64) bad('name pointer loop');
      if (next < 0) next = pos + 2;
      pos = limit = ptr;
      continue;
    }
    if (len & 0xc0) bad('unknown label type');
    if (pos + 1 + len > buf.length) bad('label runs past the message');
    if (name.length) name += '.';
    name += buf.toString('latin1', pos + 1, pos + 1 + len);
    if (name.length > 254) bad('name too long');
    pos += 1 + len;
  }
  return { name, next };
}

/** Offset after the name at `off`, without building it. */
function skipName(buf: Buffer, off: number): number {
  let pos = off;
  for (;;) {
    if (pos >= buf.length) bad('name runs past the message');
    const len = buf[pos]!;
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) { if (pos + 1 >= buf.length) bad('truncated pointer'); return pos + 2; }
    if (len & 0xc0) bad('unknown label type');
    pos += 1 + len;
  }
}

export function readQuestion(buf: Buffer): Question {
  if (buf.length < HEADER) bad('shorter than a header');
  if (buf.readUInt16BE(4) !== 1) bad('not exactly one question');
  const { name, next } = readName(buf, HEADER);
  if (next + 4 > buf.length) bad('truncated question');
  return { name, type: buf.readUInt16BE(next), cls: buf.readUInt16BE(next + 2), end: next + 4 };
}

export const flagsOf = (buf: Buffer): number => buf.readUInt16BE(2);

export interface AddressRecord { readonly address: string; readonly family: 4 | 6 }

export interface AnswerFacts {
  /** The question name and every CNAME target reached from it, lower case. */
  readonly chain: string[];
  readonly addresses: AddressRecord[];
  /** Minimum TTL of the address records (seconds); 0 when there are none. */
  readonly ttl: number;
}

interface Rr { type: number; ttl: number; rdata: number; rdlen: number; owner: number }

/**
 * The chain and addresses an answer gives for its question name. `qname`
 * lower case. Only records owned by a name on the chain count, so an
 * unrelated (or poisoned) record in the answer section is never learned.
 */
export function answerFacts(buf: Buffer, qend: number, qname: string): AnswerFacts {
  const ancount = buf.readUInt16BE(6);
  const rrs: Rr[] = [];
  let off = qend;
  let cnames = 0;
  for (let i = 0; i < ancount; i++) {
    const owner = off;
    off = skipName(buf, off);
    if (off + 10 > buf.length) bad('truncated record');
    const rdlen = buf.readUInt16BE(off + 8);
    const rr = { type: buf.readUInt16BE(off), ttl: buf.readUInt32BE(off + 4), rdata: off + 10, rdlen, owner };
    off += 10 + rdlen;
    if (off > buf.length) bad('record data runs past the message');
    if (rr.type === TYPE_CNAME) cnames++;
    if (rr.type === TYPE_A || rr.type === TYPE_AAAA || rr.type === TYPE_CNAME) rrs.push(rr);
  }
  const chain = [qname];
  const ownerName = (rr: Rr) => readName(buf, rr.owner).name.toLowerCase();
  if (cnames > 0) {
    // Follow qname -> target -> ... whatever order the records come in.
    const target = new Map<string, string>();
    for (const rr of rrs) if (rr.type === TYPE_CNAME) target.set(ownerName(rr), readName(buf, rr.rdata).name.toLowerCase());
    for (let t = target.get(qname); t !== undefined && chain.length <= MAX_HOPS && !chain.includes(t); t = target.get(t)) chain.push(t);
  }
  const addresses: AddressRecord[] = [];
  let ttl = -1;
  for (const rr of rrs) {
    if (rr.type === TYPE_CNAME) continue;
    if ((rr.type === TYPE_A && rr.rdlen !== 4) || (rr.type === TYPE_AAAA && rr.rdlen !== 16)) bad('address of the wrong size');
    if (!chain.includes(ownerName(rr))) continue;
    addresses.push(rr.type === TYPE_A
      ? { address: ipv4(buf, rr.rdata), family: 4 }
      : { address: ipv6(buf, rr.rdata), family: 6 });
    ttl = ttl < 0 ? rr.ttl : Math.min(ttl, rr.ttl);
  }
  return { chain, addresses, ttl: ttl < 0 ? 0 : ttl };
}

/** Whether the answer section has a CNAME (if not, the chain is the question alone). */
export function hasCname(buf: Buffer, qend: number): boolean {
  const ancount = buf.readUInt16BE(6);
  let off = qend;
  for (let i = 0; i < ancount; i++) {
    off = skipName(buf, off);
    if (off + 10 > buf.length) bad('truncated record');
    if (buf.readUInt16BE(off) === TYPE_CNAME) return true;
    off += 10 + buf.readUInt16BE(off + 8);
  }
  return false;
}

const ipv4 = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

/** RFC 5952 text (what nft and Node print): longest run of 2+ zero groups as "::". */
export function ipv6(b: Buffer, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(o + 2 * i));
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/**
 * SERVFAIL for a query: its header and question, QR and RA set, the opcode
 * and RD kept, no records. Built from the client's own bytes, so the ID and
 * question are exactly what the client expects.
 */
export function servfail(query: Buffer, qend: number): Buffer {
  const out = Buffer.from(query.subarray(0, qend));
  const flags = query.readUInt16BE(2);
  out.writeUInt16BE(QR | (flags & (OPCODE_MASK | RD)) | RA | 2, 2);
  out.writeUInt32BE(0x00010000, 4); // qdcount 1, ancount 0
  out.writeUInt32BE(0, 8); // nscount 0, arcount 0
  return out;
}

/**
 * Same question (name case-insensitively, type, class) in a response as in
 * our query. Byte comparison first (servers echo the question as sent, so
 * this is the rule); a compressed or re-cased echo gets the full parse.
 */
export function sameQuestion(resp: Buffer, query: Buffer, q: Question): boolean {
  if (resp.length < q.end || resp[4] !== 0 || resp[5] !== 1) return false;
  let i = HEADER;
  for (; i < q.end; i++) {
    const a = resp[i]!, b = query[i]!;
    // ASCII letters compare without case (0x20), other bytes exactly.
    if (a !== b && !((a | 0x20) === (b | 0x20) && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7a)) break;
  }
  if (i === q.end) return true;
  try {
    const r = readQuestion(resp);
    return r.type === q.type && r.cls === q.cls && (r.name === q.name || r.name.toLowerCase() === q.name.toLowerCase());
  } catch {
    return false;
  }
}
