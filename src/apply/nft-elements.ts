/**
 * Element-only transactions (a name's addresses changed) sent to nf_tables
 * over netlink, as one batch: all or nothing, like `nft -f`. Why not nft:
 * nft fetches the table's sets and their elements before every command, so
 * with a 1000-rule policy (a 1000-span interval map) one element update cost
 * ten times what it costs with 5 rules; this path costs the same whatever is
 * in the table. Tables are still replaced with `nft -j -f` (apply/nft.ts).
 */
import { constants } from 'node:os';
import { RawNetlinkSocket } from 'netlink';
import { ipToBigInt } from '../config/ip.js';
import { elementOnly, type Element, type Transaction, type Verdict } from '../plan/nft-tx.js';

const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLA_F_NESTED = 0x8000;
const FAMILY: Record<string, number> = { inet: 1, ip: 2, ip6: 10 };
const VERDICT: Record<string, number> = { accept: 1, drop: 0, jump: -3, goto: -4 };

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
const nest = (type: number, parts: Buffer[]) => attr(type | NLA_F_NESTED, Buffer.concat(parts));
const str = (s: string) => Buffer.from(s + '\0');
const be32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const be64 = (n: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(n); return b; };

function keyBytes(key: string): Buffer {
  const v6 = key.includes(':');
  const n = ipToBigInt(key, v6 ? 6 : 4);
  const b = Buffer.alloc(v6 ? 16 : 4);
  for (let i = b.length - 1, x = n; i >= 0; i--, x >>= 8n) b[i] = Number(x & 0xffn);
  return b;
}

function verdictAttr(v: Verdict): Buffer {
  const [code, chain] = typeof v === 'string' ? [VERDICT[v]!, undefined] : 'goto' in v ? [VERDICT.goto!, v.goto] : [VERDICT.jump!, v.jump];
  const parts = [attr(1, be32(code))];
  if (chain !== undefined) parts.push(attr(2, str(chain)));
  return nest(2, [nest(2, parts)]); // NFTA_SET_ELEM_DATA { NFTA_DATA_VERDICT { CODE, CHAIN } }
}

function elementAttr(e: Element): Buffer {
  if (/[-/]/.test(e.key)) throw new Error(`element ${e.key}: ranges go through nft`);
  const parts = [nest(1, [attr(1, keyBytes(e.key))])]; // NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
  if (e.timeout !== undefined) parts.push(attr(4, be64(BigInt(e.timeout) * 1000n)));
  if (e.verdict !== undefined) parts.push(verdictAttr(e.verdict));
  return nest(1, parts); // NFTA_LIST_ELEM
}

function message(type: number, flags: number, seq: number, family: number, resId: number, body: Buffer[]): Buffer {
  const payload = Buffer.concat([Buffer.from([family, 0, resId >> 8, resId & 0xff]), ...body]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  return Buffer.concat([h, payload]);
}


/** The kernel refused the batch (nothing of it was applied). */
export class NftRefused extends Error {
  constructor(readonly errno: number) {
    const code = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    super(`nf_tables refused the element update: ${code}`);
  }
}

export class NftElementSocket {
  private sock: RawNetlinkSocket | undefined;
  private seq = Math.floor(Date.now() / 1000) & 0xffffff;
  private readonly waiting = new Map<number, (errno: number) => void>();

  private socket(): RawNetlinkSocket {
    if (this.sock) return this.sock;
    const s = new RawNetlinkSocket(NETLINK_NETFILTER);
    s.unref();
    s.on('message', (buf) => this.receive(buf));
    s.on('error', () => { this.close(); });
    return (this.sock = s);
  }

  private receive(buf: Buffer): void {
    for (let off = 0; off + 16 <= buf.length;) {
      const len = buf.readUInt32LE(off);
      if (len < 16) break;
      if (buf.readUInt16LE(off + 4) === NLMSG_ERROR) {
        const done = this.waiting.get(buf.readUInt32LE(off + 8));
        done?.(-buf.readInt32LE(off + 16));
      }
      off += (len + 3) & ~3;
    }
  }

  /** Sends the transaction as one nfnetlink batch; rejects with the first kernel error. */
  run(tx: Transaction, timeoutMs = 2000): Promise<void> {
    if (!elementOnly(tx)) return Promise.reject(new Error('not an element-only transaction'));
    const family = FAMILY[tx.family]!;
    const msgs: Buffer[] = [message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, ++this.seq, 0, NFNL_SUBSYS_NFTABLES, [])];
    const seqs: number[] = [];
    for (const op of tx.ops) {
      if (op.obj.kind !== 'element') continue;
      const add = op.verb === 'add' || op.verb === 'create';
      const type = (NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM);
      const flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE : 0) | (op.verb === 'create' ? NLM_F_EXCL : 0);
      const seq = ++this.seq;
      seqs.push(seq);
      msgs.push(message(type, flags, seq, family, 0, [attr(1, str(tx.table)), attr(2, str(op.obj.set)), nest(3, op.obj.elements.map(elementAttr))]));
    }
    msgs.push(message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, ++this.seq, 0, NFNL_SUBSYS_NFTABLES, []));
    const sock = this.socket();
    return new Promise<void>((resolve, reject) => {
      let left = seqs.length;
      let failed = 0;
      const finish = (err?: Error) => {
        clearTimeout(timer);
        for (const s of seqs) this.waiting.delete(s);
        if (err) reject(err); else resolve();
      };
      const timer = setTimeout(() => finish(new Error(`nf_tables did not answer in ${timeoutMs} ms`)), timeoutMs);
      for (const s of seqs) {
        this.waiting.set(s, (errno) => {
          if (errno !== 0 && failed === 0) failed = errno;
          if (--left === 0) finish(failed ? new NftRefused(failed) : undefined);
        });
      }
      sock.send(msgs, {}, (e) => { if (e) finish(e); });
    });
  }

  close(): void {
    this.sock?.close();
    this.sock = undefined;
  }
}
