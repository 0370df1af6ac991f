/**
 * Set and map elements written straight to nf_tables over netlink, the one
 * element writer of the project: the firewall's name updates (element-only
 * Transactions, `run`) and the DNS view's learned addresses (`write`, the
 * hot path) both go through it. One nfnetlink batch (BEGIN, element
 * messages, END) is one transaction, acknowledged by the kernel after the
 * commit. Why not nft: nft 1.0.6 fetches the table's sets and their elements
 * before each command, so an element add cost ~1 ms on a small set and ~70 ms
 * on a 20k-element one (and a 1000-rule policy's update ten times its 5-rule
 * cost); this costs ~0.1 ms whatever is in the table. Tables, chains and rules
 * still go through `nft -j -f` (apply/nft.ts).
 *
 * Calls arriving in the same turn of the event loop share one batch (under
 * load, one commit for many answers); if that batch is refused, each call is
 * sent again alone, so one bad call never fails another.
 */
import { constants } from 'node:os';
import { RawNetlinkSocket } from 'netlink';
import { isIPv4 } from 'node:net';
import type { NftFamily } from '../plan/nft.js';
import { elementOnly, type Transaction, type Verdict } from '../plan/nft-tx.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NLM_F_REQUEST = 0x1, NLM_F_ACK = 0x4, NLM_F_EXCL = 0x200, NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLA_F_NESTED = 0x8000;
// linux/netfilter/nf_tables.h
const NFTA_SET_ELEM_LIST_TABLE = 1, NFTA_SET_ELEM_LIST_SET = 2, NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1, NFTA_SET_ELEM_DATA = 2, NFTA_SET_ELEM_TIMEOUT = 4;
const NFTA_DATA_VALUE = 1, NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1, NFTA_VERDICT_CHAIN = 2;
const NFPROTO: Record<NftFamily, number> = { inet: 1, ip: 2, ip6: 10 };
const VERDICT_CODE = { accept: 1, drop: 0, jump: -3, goto: -4 } as const;

export class NftNetlinkError extends Error {
  constructor(message: string, readonly errno?: number) { super(message); }
}

/** The kernel refused the batch (nothing of it was applied): final, unlike a socket problem. */
export class NftRefused extends NftNetlinkError {
  constructor(errno: number) {
    const code = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    super(`nf_tables refused the element update: ${code}`, errno);
  }
}

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
const nested = (type: number, parts: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(parts));
const strz = (s: string) => Buffer.from(s + '\0');
const be32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };

function nlmsg(type: number, flags: number, seq: number, family: number, resId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(20);
  head.writeUInt32LE(20 + payload.length, 0);
  head.writeUInt16LE(type, 4);
  head.writeUInt16LE(flags, 6);
  head.writeUInt32LE(seq, 8);
  head.writeUInt32LE(0, 12);
  // struct nfgenmsg: family, version, res_id (big endian)
  head.writeUInt8(family, 16);
  head.writeUInt8(0, 17);
  head.writeUInt16BE(resId, 18);
  return Buffer.concat([head, payload]);
}

/** The key bytes of an address (network order). */
export function addressKey(address: string): Buffer {
  if (/[-/]/.test(address)) throw new NftNetlinkError(`element ${address}: ranges go through nft`);
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function verdictAttr(v: Verdict): Buffer {
  const [code, chain] = typeof v === 'string' ? [VERDICT_CODE[v], undefined] : 'goto' in v ? [VERDICT_CODE.goto, v.goto] : [VERDICT_CODE.jump, v.jump];
  const parts = [attr(NFTA_VERDICT_CODE, be32(code))];
  if (chain !== undefined) parts.push(attr(NFTA_VERDICT_CHAIN, strz(chain)));
  return nested(NFTA_SET_ELEM_DATA, [nested(NFTA_DATA_VERDICT, parts)]);
}

/** One element: an address, with a timeout (ms, sets/maps with flag timeout) and a verdict (verdict maps). */
export interface NlElement { readonly address: string; readonly timeoutMs?: number; readonly verdict?: Verdict }
/** One element message: add (create: fail if present) or delete `elements` of `set`. */
export interface NlOp { readonly verb: 'add' | 'create' | 'delete'; readonly set: string; readonly elements: readonly NlElement[] }
/** A set refresh (the DNS view's learn): the addresses, with a timeout, and a verdict for a map. */
export interface ElementWrite { readonly set: string; readonly addresses: readonly string[]; readonly timeoutMs: number; readonly verdict?: Verdict }

function elementAttr(e: NlElement, withTimeout: boolean): Buffer {
  const parts = [nested(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, addressKey(e.address))])];
  if (withTimeout && e.timeoutMs !== undefined) {
    const t = Buffer.alloc(8);
    t.writeBigUInt64BE(BigInt(Math.max(1, Math.round(e.timeoutMs))));
    parts.push(attr(NFTA_SET_ELEM_TIMEOUT, t));
  }
  if (withTimeout && e.verdict !== undefined) parts.push(verdictAttr(e.verdict));
  return nested(NFTA_LIST_ELEM, parts);
}

/**
 * A refresh as element messages: add, delete, add. The first add makes the
 * delete safe for a new address; the delete and second add set the new
 * timeout (and verdict) also on kernels that keep the old one on a re-add.
 * Packets see the element before or after, never without it.
 */
export function refreshOps(writes: readonly ElementWrite[]): NlOp[] {
  return writes.flatMap((w) => {
    const elements = w.addresses.map((address) => ({ address, timeoutMs: w.timeoutMs, verdict: w.verdict }));
    return [{ verb: 'add', set: w.set, elements }, { verb: 'delete', set: w.set, elements }, { verb: 'add', set: w.set, elements }] as NlOp[];
  });
}

/** An element-only Transaction (plan/nft-tx.ts) as element messages (timeouts there are seconds). */
export function txOps(tx: Transaction): NlOp[] {
  if (!elementOnly(tx)) throw new NftNetlinkError('not an element-only transaction');
  return tx.ops.map((op) => {
    if (op.obj.kind !== 'element' || op.verb === 'flush') throw new NftNetlinkError('not an element-only transaction');
    return { verb: op.verb, set: op.obj.set, elements: op.obj.elements.map((e) => ({ address: e.key, verdict: e.verdict, timeoutMs: e.timeout === undefined ? undefined : e.timeout * 1000 })) };
  });
}

export interface BatchPart { readonly family: NftFamily; readonly table: string; readonly ops: readonly NlOp[] }

/** The batch for `parts`, BEGIN and END around them. Every element message asks for an ACK; `seqs` are theirs. */
export function elementBatch(parts: readonly BatchPart[], seq0: number): { buf: Buffer; seqs: number[] } {
  let seq = seq0;
  const msgs = [nlmsg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0))];
  const seqs: number[] = [];
  for (const p of parts) {
    for (const op of p.ops) {
      const add = op.verb !== 'delete';
      const body = Buffer.concat([attr(NFTA_SET_ELEM_LIST_TABLE, strz(p.table)), attr(NFTA_SET_ELEM_LIST_SET, strz(op.set)),
        nested(NFTA_SET_ELEM_LIST_ELEMENTS, op.elements.map((e) => elementAttr(e, add)))]);
      const flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE : 0) | (op.verb === 'create' ? NLM_F_EXCL : 0);
      seqs.push(seq);
      msgs.push(nlmsg((NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM), flags, seq++, NFPROTO[p.family], 0, body));
    }
  }
  msgs.push(nlmsg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)));
  return { buf: Buffer.concat(msgs), seqs };
}

interface Job { readonly part: BatchPart; readonly resolve: () => void; readonly reject: (e: Error) => void; readonly alone?: boolean }
interface Wait { readonly seqs: number[]; readonly pending: Set<number>; readonly done: (err?: Error) => void; readonly timer: NodeJS.Timeout }

/** At most this many calls go in one batch. */
const MAX_JOIN = 128;

/** A netlink socket (in the caller's network namespace) writing elements of tables of `family`. */
export class NftElementWriter {
  private sock: RawNetlinkSocket | undefined;
  private seq = Math.floor(Math.random() * 0x3fffffff);
  private readonly waits = new Map<number, Wait>();
  private readonly queue: Job[] = [];
  private scheduled = false;
  /** Batches sent, and calls they carried. */
  readonly counts = { batches: 0, writes: 0 };

  /** `table`: where write() goes (run() names its own). */
  constructor(private readonly family: NftFamily, private readonly table: string, private readonly o: { timeoutMs?: number } = {}) {}

  /** Adds (or refreshes) `writes` in this writer's table; resolves once the kernel committed them. */
  write(writes: readonly ElementWrite[]): Promise<void> {
    const live = writes.filter((w) => w.addresses.length > 0);
    if (live.length === 0) return Promise.resolve();
    return this.submit({ family: this.family, table: this.table, ops: refreshOps(live) });
  }

  /** An element-only transaction, all or nothing; rejects with NftRefused when the kernel refuses it. */
  run(tx: Transaction): Promise<void> {
    let ops: NlOp[];
    try { ops = txOps(tx); } catch (e) { return Promise.reject(e); }
    return this.submit({ family: tx.family, table: tx.table, ops });
  }

  private submit(part: BatchPart): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ part, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => { this.scheduled = false; this.flush(); });
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const first = this.queue.shift()!;
      const jobs = [first];
      if (!first.alone) while (jobs.length < MAX_JOIN && this.queue.length > 0 && !this.queue[0]!.alone) jobs.push(this.queue.shift()!);
      this.send(jobs);
    }
  }

  private send(jobs: Job[]): void {
    let sock: RawNetlinkSocket;
    let batch: { buf: Buffer; seqs: number[] };
    try {
      sock = (this.sock ??= this.open());
      batch = elementBatch(jobs.map((j) => j.part), this.seq);
    } catch (e) {
      for (const j of jobs) j.reject(e as Error);
      return;
    }
    const { buf, seqs } = batch;
    this.seq = (this.seq + seqs.length + 2) & 0x7fffffff;
    this.counts.batches++;
    this.counts.writes += jobs.length;
    const done = (err?: Error) => {
      clearTimeout(w.timer);
      for (const s of w.seqs) if (this.waits.get(s) === w) this.waits.delete(s);
      if (!err) for (const j of jobs) j.resolve();
      else if (jobs.length === 1) jobs[0]!.reject(err);
      else { this.queue.unshift(...jobs.map((j) => ({ ...j, alone: true }))); this.schedule(); }
    };
    const ms = this.o.timeoutMs ?? 1000;
    const w: Wait = { seqs, pending: new Set(seqs), done, timer: setTimeout(() => done(new NftNetlinkError(`no acknowledgement from nf_tables within ${ms} ms`)), ms) };
    for (const s of seqs) this.waits.set(s, w);
    sock.send(buf, {}, (err) => { if (err) done(new NftNetlinkError(`netlink send: ${err.message}`, err.errno)); });
  }

  private open(): RawNetlinkSocket {
    const s = new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
    s.unref();
    s.on('message', (m) => this.receive(m));
    s.on('error', (e) => {
      for (const w of new Set(this.waits.values())) w.done(new NftNetlinkError(`netlink: ${e.message}`, e.errno));
      this.sock = undefined;
    });
    return s;
  }

  private receive(m: Buffer): void {
    for (let off = 0; off + 16 <= m.length;) {
      const len = m.readUInt32LE(off);
      if (len < 16) break;
      if (m.readUInt16LE(off + 4) === NLMSG_ERROR && off + 36 <= m.length) {
        const errno = -m.readInt32LE(off + 16);
        const seq = m.readUInt32LE(off + 20 + 8);
        const w = this.waits.get(seq);
        if (w) {
          if (errno !== 0) w.done(new NftRefused(errno));
          else { w.pending.delete(seq); if (w.pending.size === 0) w.done(); }
        }
      }
      off += (len + 3) & ~3;
    }
  }

  close(): void {
    for (const w of new Set(this.waits.values())) w.done(new NftNetlinkError('closed'));
    for (const j of this.queue.splice(0)) j.reject(new NftNetlinkError('closed'));
    this.sock?.close();
    this.sock = undefined;
  }
}
