/**
 * Admission and the count of open client connections, shared by both
 * listeners (net.Socket in server.ts, the fast path in fast.ts): the
 * connection cap and the client allow-list act at accept, before any parsing,
 * with a clean answer (503 / 403) instead of a silent reset.
 */
import { cidrContains, ipFamily, type Cidr } from '../../config/ip.js';
import { closingReply } from './http1.js';
import type { Runtime } from './runtime.js';

const FULL = Buffer.from(closingReply(503, 'too many connections\n'));
const NOT_ALLOWED = Buffer.from(closingReply(403, 'denied: client address not allowed\n'));

/** How connections are accepted: C (fast.ts) or net.Server (server.ts). */
export interface Acceptor {
  /** What the start-up line names. */
  readonly path: 'fastpath' | 'net.Socket';
  readonly port: number;
  /** Stop accepting; connections that have not sent a byte are closed. */
  stop(): void;
  /** Cut its open connections now (adopted ones are the front's). */
  destroy(): void;
  /** Every connection has ended. */
  forget(): void;
}

export class Gate {
  private open = 0;
  private drained: (() => void) | undefined;

  constructor(private readonly rt: Runtime, readonly clients: readonly Cidr[] | undefined) {}

  /**
   * At accept: the reply of a refusal (counted), or undefined: served and
   * counted as open until closed(). `address` is read only with an allow-list.
   */
  admit(address: string): Buffer | undefined {
    const st = this.rt.stats;
    if (this.open >= this.rt.limits.maxConnections) { st.refused.limit++; return FULL; }
    if (this.clients && !clientAllowed(this.clients, address)) { st.refused.client++; return NOT_ALLOWED; }
    st.accepted++;
    st.active = ++this.open;
    return undefined;
  }

  /** A served connection closed, with the bytes it moved each way. */
  closed(bytesIn: number, bytesOut: number): void {
    const st = this.rt.stats;
    st.active = --this.open;
    st.bytesIn += bytesIn;
    st.bytesOut += bytesOut;
    if (this.open === 0) this.drained?.();
  }

  /** Resolves once no connection is open. */
  async idle(): Promise<void> {
    if (this.open > 0) await new Promise<void>((r) => { this.drained = r; });
  }
}

function clientAllowed(clients: readonly Cidr[], address: string): boolean {
  const fam = ipFamily(address);
  return fam !== 0 && clients.some((c) => cidrContains(c, address, fam));
}
