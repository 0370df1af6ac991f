/**
 * The DNS view's forwarder: UDP and TCP listeners the firewall redirects its
 * sources' port-53 traffic to. Each query goes upstream with an ID of its
 * own; the answer comes back byte for byte (client ID restored). When the
 * question name, or a name on its CNAME chain, is one a dnsName rule names,
 * the answer's addresses go to the learn hook first, inside the name's
 * critical section (gate.ts), and the answer is released only once the hook
 * has resolved: the pod cannot connect to an address the datapath does not
 * allow yet. A hook that fails or overruns its bound turns the answer into
 * SERVFAIL, so the pod never holds an address the firewall does not enforce.
 *
 * Layered as undici's dispatchers: stats, close() drains, destroy() stops.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../../../observe/log.js';
import { NameGate } from './gate.js';
import { normalizeName, type NameMatcher } from './match.js';
import { tcpQuery, UdpUpstream, UpstreamError, type Server, type UpstreamClient } from './upstream.js';
import { answerFacts, hasCname, QR, readQuestion, sameQuestion, servfail, TYPE_A, TYPE_AAAA, type AddressRecord, type Question } from './wire.js';
import { newStats, type DnsViewStats } from './stats.js';

export type { DnsViewStats };
export type LearnedAddress = AddressRecord;
/**
 * Put `addresses` in the datapath sets of `ruleNames` for `ttlSeconds` (plus
 * the firewall's grace); resolve once the kernel has them. `covered`, when
 * the hook has it, says synchronously that the kernel already holds them all
 * long enough (committed, not in flight): the answer then goes at once.
 */
export type LearnHook = ((ruleNames: string[], addresses: LearnedAddress[], ttlSeconds: number) => Promise<void>) & {
  covered?: (ruleNames: readonly string[], addresses: readonly LearnedAddress[], ttlSeconds: number) => boolean;
};

export interface DnsViewOptions {
  /** Listen address (UDP and TCP), e.g. '0.0.0.0' or '::'; port 0 picks one (tests). */
  readonly host: string;
  readonly port: number;
  /** Where queries go: the server the pods addressed, or the node's resolv.conf nameservers. */
  readonly upstreams: readonly Server[];
  readonly matcher: NameMatcher;
  readonly learn: LearnHook;
  /** Bound on the critical section (queue + hook) before SERVFAIL, ms (EGRESS_FIREWALL_DNS_TIMEOUT). */
  readonly learnTimeoutMs?: number;
  /** Per upstream attempt, ms; attempts rotate over the upstreams. */
  readonly upstreamTimeoutMs?: number;
  readonly upstreamAttempts?: number;
  readonly upstreamSockets?: number;
  /** Queries waiting for an upstream or the hook; beyond it new queries are dropped (or SERVFAIL). */
  readonly maxInFlight?: number;
  readonly overload?: 'drop' | 'servfail';
  readonly maxTcpClients?: number;
  readonly tcpIdleMs?: number;
  readonly logger?: Logger;
}

/** One client query in flight: the upstream's callback target (no closures per query). */
class Query implements UpstreamClient {
  done = false;
  constructor(readonly f: DnsViewForwarder, readonly msg: Buffer, readonly q: Question, readonly clientId: number,
    readonly port: number, readonly address: string, readonly conn: net.Socket | undefined) {}
  upstreamDone(err: Error | undefined, answer?: Buffer): void { this.f.onUpstream(this, err, answer); }
}

export class DnsViewForwarder {
  private readonly s = newStats();
  private readonly gate = new NameGate();
  private readonly tcpClients = new Set<net.Socket>();
  private readonly tcpCancels = new Set<() => void>();
  private readonly lastWarn = new Map<string, { at: number; suppressed: number }>();
  private matcher: NameMatcher;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private drained: (() => void) | undefined;
  private readonly o: Required<Omit<DnsViewOptions, 'logger'>> & { logger?: Logger };

  private constructor(opts: DnsViewOptions, private readonly udp: dgram.Socket, private readonly tcp: net.Server, private readonly up: UdpUpstream) {
    this.o = {
      learnTimeoutMs: 250, upstreamTimeoutMs: 2000, upstreamAttempts: 2, upstreamSockets: 4, maxInFlight: 1024, overload: 'drop',
      maxTcpClients: 256, tcpIdleMs: 10_000, ...opts,
    };
    this.matcher = opts.matcher;
    udp.on('message', (m, r) => this.query(m, r.port, r.address, undefined));
    udp.on('error', (e) => this.warn('udp', { err: e.message }, 'dns view listener error'));
    tcp.on('connection', (c) => this.accept(c));
    tcp.on('error', (e) => this.warn('tcp', { err: e.message }, 'dns view listener error'));
    tcp.maxConnections = this.o.maxTcpClients;
  }

  /** Binds UDP and TCP on the same port and starts serving. */
  static async start(opts: DnsViewOptions): Promise<DnsViewForwarder> {
    const type = net.isIPv6(opts.host) ? 'udp6' : 'udp4';
    for (let tries = 0; ; tries++) {
      const udp = dgram.createSocket({ type, recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
      const tcp = net.createServer({ noDelay: true });
      try {
        await new Promise<void>((res, rej) => { udp.once('error', rej); udp.bind(opts.port, opts.host, () => { udp.off('error', rej); res(); }); });
        const port = udp.address().port;
        await new Promise<void>((res, rej) => { tcp.once('error', rej); tcp.listen(port, opts.host, () => { tcp.off('error', rej); res(); }); });
      } catch (e) {
        udp.close();
        tcp.close();
        // Port 0: the UDP port the kernel picked may be taken for TCP; pick again.
        if (opts.port === 0 && tries < 5 && (e as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw e;
      }
      const up = new UdpUpstream(opts.upstreams, {
        sockets: opts.upstreamSockets ?? 4, timeoutMs: opts.upstreamTimeoutMs ?? 2000, attempts: opts.upstreamAttempts ?? 2,
      });
      await up.start();
      return new DnsViewForwarder(opts, udp, tcp, up);
    }
  }

  get port(): number { return this.udp.address().port; }

  get stats(): Readonly<DnsViewStats> {
    this.s.upstream_strays = this.up.strays;
    return this.s;
  }

  /** A policy change: new names apply to the next answers; updates already queued finish. */
  setMatcher(m: NameMatcher): void { this.matcher = m; }

  private query(msg: Buffer, port: number, address: string, conn: net.Socket | undefined): void {
    const s = this.s;
    s.queries++;
    if (conn) s.tcp_queries++; else s.udp_queries++;
    let q: Question;
    try {
      if (msg.length < 12 || msg.readUInt16BE(2) & QR) throw new Error('not a query');
      q = readQuestion(msg);
    } catch {
      s.malformed++;
      this.warn('malformed', { proto: conn ? 'tcp' : 'udp' }, 'dns view dropped a malformed query');
      return;
    }
    if (this.state !== 'open') { s.dropped_closing++; return; }
    const query = new Query(this, msg, q, msg.readUInt16BE(0), port, address, conn);
    if (s.in_flight >= this.o.maxInFlight) {
      s.dropped_overload++;
      this.warn('overload', { in_flight: s.in_flight }, 'dns view over its in-flight bound');
      if (this.o.overload === 'servfail') this.respond(query, servfail(msg, q.end));
      return;
    }
    s.in_flight++;
    if (!conn) { this.up.query(msg, query); return; }
    const cancel = tcpQuery(this.o.upstreams, msg, this.o.upstreamTimeoutMs, {
      upstreamDone: (e, a) => { this.tcpCancels.delete(cancel); query.upstreamDone(e, a); },
    });
    this.tcpCancels.add(cancel);
  }

  /** @internal The upstream answered (or gave up) for `query`. */
  onUpstream(query: Query, err: Error | undefined, answer: Buffer | undefined): void {
    if (err || !answer) {
      if (err instanceof UpstreamError && err.code === 'ECLOSED') { this.finish(query, undefined); return; }
      this.s.servfail_upstream++;
      this.warn('upstream', { name: query.q.name, err: err?.message }, 'dns view upstream failed, answered SERVFAIL');
      this.finish(query, this.servfailFor(query));
      return;
    }
    if (!sameQuestion(answer, query.msg, query.q)) { this.s.malformed_upstream++; this.finish(query, this.servfailFor(query)); return; }
    this.release(query, answer);
  }

  /** Releases an upstream answer, after the learn hook when a rule names it. */
  private release(query: Query, answer: Buffer): void {
    const q = query.q;
    const m = this.matcher;
    // Only address questions carry addresses in the answer section.
    if ((q.type !== TYPE_A && q.type !== TYPE_AAAA) || m.size === 0) { this.finish(query, answer); return; }
    const qn = normalizeName(q.name);
    let facts;
    try {
      // The common case, a name outside every rule and no CNAME: one walk, no strings.
      if (!hasCname(answer, q.end) && !m.match(qn)) { this.finish(query, answer); return; }
      facts = answerFacts(answer, q.end, qn);
    } catch {
      this.s.malformed_upstream++;
      this.finish(query, this.servfailFor(query));
      return;
    }
    let rules: string[] | undefined;
    for (const n of facts.chain) {
      const r = m.match(n);
      if (r) rules = rules ? [...new Set([...rules, ...r])] : [...r];
    }
    if (!rules || facts.addresses.length === 0) { this.finish(query, answer); return; }
    const names = rules;
    const { addresses, ttl } = facts;
    if (this.o.learn.covered?.(names, addresses, ttl)) { this.s.learned++; this.s.learned_covered++; this.finish(query, answer); return; }
    const started = Date.now();
    this.gate.run(qn, () => this.o.learn(names, addresses, ttl), this.o.learnTimeoutMs).then(({ result, err }) => {
      if (result === 'ok') { this.s.learned++; this.finish(query, answer); return; }
      if (result === 'timeout') this.s.servfail_timeout++; else this.s.servfail_error++;
      this.warn(`learn-${result}`, {
        name: qn, rules: names.join(','), addresses: addresses.map((a) => a.address).join(','), ms: Date.now() - started,
        err: result === 'timeout' ? `no acknowledgement within ${this.o.learnTimeoutMs} ms` : String((err as Error)?.message ?? err),
      }, 'dns view set update failed, answered SERVFAIL');
      this.finish(query, this.servfailFor(query));
    });
  }

  private servfailFor(query: Query): Buffer {
    query.msg.writeUInt16BE(query.clientId, 0);
    return servfail(query.msg, query.q.end);
  }

  private finish(query: Query, answer: Buffer | undefined): void {
    if (query.done) return;
    query.done = true;
    const s = this.s;
    s.in_flight--;
    if (answer && this.state !== 'closed') {
      answer.writeUInt16BE(query.clientId, 0);
      s.answers++;
      this.respond(query, answer);
    }
    if (s.in_flight === 0) this.drained?.();
  }

  private respond(query: Query, b: Buffer): void {
    const c = query.conn;
    if (!c) { this.udp.send(b, query.port, query.address); return; }
    if (c.destroyed) return;
    const head = Buffer.allocUnsafe(2);
    head.writeUInt16BE(b.length);
    c.write(Buffer.concat([head, b]));
  }

  private accept(c: net.Socket): void {
    if (this.state !== 'open') { c.destroy(); return; }
    this.tcpClients.add(c);
    c.setTimeout(this.o.tcpIdleMs, () => c.destroy());
    c.on('error', () => {});
    c.on('close', () => this.tcpClients.delete(c));
    let buf: Buffer | undefined;
    c.on('data', (d: Buffer) => {
      buf = buf ? Buffer.concat([buf, d]) : d;
      // RFC 7766: each message behind its 2-byte length; several per connection, answered in any order.
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        this.query(msg, 0, '', c);
      }
      if (buf.length === 0) buf = undefined;
    });
  }

  /** One log line per kind and second at most: a flood must not become a log flood. */
  private warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    const log = this.o.logger;
    if (!log) return;
    const now = Date.now();
    const w = this.lastWarn.get(kind);
    if (w && now - w.at < 1000) { w.suppressed++; return; }
    this.lastWarn.set(kind, { at: now, suppressed: 0 });
    log.warn({ ...fields, ...(w?.suppressed ? { suppressed: w.suppressed } : {}) }, msg);
  }

  /** Stops taking queries, answers those in flight (bounded by their own timeouts), then closes. */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.tcp.close();
    if (this.s.in_flight > 0) await new Promise<void>((r) => (this.drained = r));
    this.destroy();
  }

  /** Stops at once: pending queries get no answer (clients retry), sockets close. */
  destroy(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.tcp.close();
    for (const c of this.tcpClients) c.destroy();
    for (const cancel of [...this.tcpCancels]) cancel();
    this.up.destroy();
    try { this.udp.close(); } catch { /* already closed */ }
    this.drained?.();
  }
}
