/**
 * Helpers for the fast path's tests (test/unit/fastpath.test.ts): a handler
 * that records every event, loopback servers and clients, fd counting.
 */
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { REASONS, type FastHandler } from '../../src/engines/fastpath/index.js';

export interface Ended { from: number; to: number; reason: string; code: string | undefined }
export type Ev = [string, number, ...unknown[]];

/** Records every event; `on` adds behaviour (it runs after the event is recorded). */
export class Rec implements FastHandler {
  readonly log: Ev[] = [];
  readonly ids: number[] = [];
  readonly ends = new Map<number, Ended>();
  /** closed() reported twice for one id (must stay 0). */
  dup = 0;
  constructor(public on: Partial<FastHandler> = {}) {}

  accept(id: number): void { this.ids.push(id); this.log.push(['accept', id]); this.on.accept?.(id); }
  head(id: number, b: Buffer): boolean { this.log.push(['head', id, b.toString('latin1')]); return this.on.head?.(id, b) ?? false; }
  headTimeout(id: number, n: number): void { this.log.push(['headTimeout', id, n]); this.on.headTimeout?.(id, n); }
  connectFailed(id: number, a: number, code: string): void { this.log.push(['connectFailed', id, a, code]); this.on.connectFailed?.(id, a, code); }
  connectSlow(id: number, a: number): void { this.log.push(['connectSlow', id, a]); this.on.connectSlow?.(id, a); }
  connected(id: number, a: number): void { this.log.push(['connected', id, a]); this.on.connected?.(id, a); }
  closed(id: number, from: number, to: number, reason: number, code?: string): void {
    if (this.ends.has(id)) this.dup++;
    this.ends.set(id, { from, to, reason: REASONS[reason] ?? String(reason), code });
    this.log.push(['closed', id, REASONS[reason], code]);
    this.on.closed?.(id, from, to, reason, code);
  }

  names(id?: number): string[] { return this.log.filter((e) => id === undefined || e[1] === id).map((e) => e[0]); }
  async id(i = 0): Promise<number> { await until(() => this.ids.length > i, 'accept'); return this.ids[i]!; }
  async ended(id: number, ms = 5000): Promise<Ended> { await until(() => this.ends.has(id), `closed(${id})`, ms); return this.ends.get(id)!; }
  /** Ids accepted and not yet closed. */
  get open(): number[] { return this.ids.filter((id) => !this.ends.has(id)); }
}

export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const fds = (): number => readdirSync('/proc/self/fd').length;

export interface Upstream { port: number; conns: net.Socket[]; close(): Promise<void> }

/** A loopback server; every accepted socket is kept (and destroyed by close()). */
export async function upstream(handler: (s: net.Socket) => void = () => {}): Promise<Upstream> {
  const conns: net.Socket[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    conns.push(s);
    s.on('error', () => {});
    handler(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    conns,
    close: () => new Promise<void>((r) => { for (const c of conns) c.destroy(); srv.close(() => r()); }),
  };
}

/** A port nothing listens on (bound, then closed: connects are refused). */
export async function deadPort(): Promise<number> {
  const u = await upstream();
  await u.close();
  return u.port;
}

export function dial(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host, allowHalfOpen: true });
    c.once('connect', () => { c.off('error', reject); resolve(c); });
    c.once('error', reject);
  });
}

export interface Reading { data(): Buffer; done: Promise<{ data: Buffer; error: string | undefined }> }

/** Everything a socket receives until its end, close or error (an error's code is kept). */
export function reading(s: net.Socket): Reading {
  const parts: Buffer[] = [];
  let error: string | undefined;
  s.on('data', (d: Buffer) => parts.push(d));
  const done = new Promise<{ data: Buffer; error: string | undefined }>((resolve) => {
    const fin = () => resolve({ data: Buffer.concat(parts), error });
    s.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
    s.once('end', fin);
    s.once('close', fin);
  });
  return { data: () => Buffer.concat(parts), done };
}
