/** One log line per request or tunnel, written when it ends. */
import type { Socket } from 'node:net';
import { unmapText } from '../../config/ip.js';
import type { Runtime } from './runtime.js';

export interface RequestLog {
  readonly start: number;
  readonly client: string;
  readonly method: string;
  target: string;
  decision?: string;
  rule?: string | undefined;
  upstream?: string;
  status?: number;
}

export function clientAddress(s: Socket): string {
  // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
  return unmapText(s.remoteAddress ?? '?');
}

export function logEnd(rt: Runtime, l: RequestLog, status: number, bytesIn: number, bytesOut: number): void {
  if (l.status !== undefined) return; // once, whichever ending came first
  l.status = status;
  if (status >= 400 && l.decision !== 'allow') {
    const r = rt.stats.refused;
    if (l.decision === 'deny') r.denied++; else if (l.decision === 'port') r.port++; else r.error++;
  }
  (l.method === 'CONNECT' ? rt.access.tunnel : rt.access.request)({
    client: l.client, method: l.method, target: l.target, decision: l.decision ?? 'error', rule: l.rule,
    upstream: l.upstream, status, bytesIn, bytesOut, ms: Math.round((performance.now() - l.start) * 10) / 10,
  });
}
