/**
 * `egress-router explain`: the verdict lines, pure; the CLI resolves names
 * and hands the answers in. One line when every address of the destination
 * gets the same verdict, else one line per address.
 */
import type { Address } from '../dns/lookup.js';
import { decideAddress, decideName, decideNameEarly, type CompiledPolicy, type Decision } from '../engines/http-proxy/policy.js';
import type { Host } from '../config/host.js';
import { decide, decisionText, type DecisionInput, type NameInfo } from './firewall-verdict.js';

function perAddress(addresses: readonly string[], text: (a: string) => string): string[] {
  const lines = addresses.map((a) => ({ a, t: text(a) }));
  const distinct = new Set(lines.map((l) => l.t));
  return distinct.size === 1 ? [...distinct] : lines.map((l) => `${l.a}: ${l.t}`);
}

/** `addresses`: the destination IP, or the addresses its name resolved to. */
export function explainFirewall(input: DecisionInput, source: string, addresses: readonly string[], port: number | undefined,
  info: ReadonlyMap<string, NameInfo>): string[] {
  return perAddress(addresses, (a) => decisionText(decide(input, source, a, port), info));
}

function httpText(d: Decision, resolved?: readonly Address[]): string {
  const how = d.allow ? 'allowed' : 'denied';
  const via = resolved?.length ? ` (resolved ${resolved.map((a) => a.address).join(', ')})` : '';
  if (d.rule) return `rule ${d.rule.line} ${d.rule.text}${via} → ${how}`;
  return `no rule matched${via} → ${d.allow ? 'allowed (* allows the rest)' : 'denied (default)'}`;
}

/** The HTTP proxy's decision: a name is allowed only when every address it resolves to is. */
export function explainHttp(p: CompiledPolicy, host: Host, resolved?: readonly Address[]): string {
  if (host.kind === 'ip') return httpText(decideAddress(p, undefined, host.address, host.family));
  const early = decideNameEarly(p, host.name);
  if (early) return httpText(early);
  if (!resolved?.length) return `${host.name} does not resolve: nothing to connect to`;
  return httpText(decideName(p, host.name, resolved ?? []), resolved);
}
