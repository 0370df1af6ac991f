/**
 * The redirect engine's nftables table, from the parsed contract. Pure.
 *
 * Pod placement mirrors the OpenShift image: DNAT what arrives on eth0,
 * SNAT what leaves macvlan0, refuse unmapped ports when there is no fallback.
 * Host placement adds a conntrack mark on DNATed flows so policy routing can
 * send them (and only them) out of macvlan0, and a forward guard so the host
 * does not become an open router.
 */
import type { RedirectConfig } from '../config/redirect.js';
import type { RouterOptions } from '../config/options.js';
import * as n from './nft.js';

export interface RedirectPlanInput {
  readonly config: RedirectConfig;
  readonly options: RouterOptions;
  /**
   * Host placement: drop forwarded traffic from the client interface that we
   * did not DNAT. Set when forwarding there was off before we turned it on.
   */
  readonly forwardGuard?: boolean;
}

export const FORWARD_GUARD_CHAIN = 'forward_guard';

export function redirectTable({ config, options, forwardGuard }: RedirectPlanInput): n.Table {
  const fam = config.source.family;
  const host = options.placement === 'host';
  const inIf = n.iifname(options.clientInterface);
  // In host placement only traffic addressed to the host itself is ours.
  const ours = host ? [inIf, n.fibDaddrLocal] : [inIf];
  const mark = host ? [n.setCtMark(options.fwmark)] : [];
  const { mappings, fallback } = config.destinations;

  const pre: n.Rule[] = mappings.map((m) => ({
    pieces: [...ours, n.dport(m.protocol, m.localPort), ...mark, n.counter, n.dnat(fam, m.ip, m.remotePort)],
  }));
  if (fallback) pre.push({ pieces: [...ours, ...mark, n.counter, n.dnat(fam, fallback)], comment: 'fallback' });

  const chains: n.Chain[] = [
    { name: 'prerouting', type: 'nat', hook: 'prerouting', priority: -100, rules: pre },
  ];
  if (host) {
    // After DNAT (-100), before the routing decision: copy the flow's mark to
    // the packet, original direction only, so replies route normally.
    chains.push({
      name: 'mark_flows', type: 'filter', hook: 'prerouting', priority: -90,
      rules: [{ pieces: [n.ctDirectionOriginal, n.ctMarkIs(options.fwmark), n.setMetaMark(options.fwmark)] }],
    });
  }
  chains.push({
    name: 'postrouting', type: 'nat', hook: 'postrouting', priority: 100,
    rules: [{ pieces: [n.oifname(options.macvlan), n.counter, n.snat(config.source.address)] }],
  });
  if (!fallback && !host) {
    // Unmapped ports are refused at once rather than left to time out. (On a
    // host the host's own services live there: its stack answers for itself.)
    chains.push({
      name: 'input', type: 'filter', hook: 'input', priority: 0,
      rules: [
        { pieces: [inIf, n.ctState(['established', 'related']), n.accept] },
        { pieces: [inIf, n.l4proto('tcp'), n.counter, n.rejectTcpReset], comment: 'unmapped port' },
        { pieces: [inIf, n.l4proto('udp'), n.counter, n.rejectPortUnreachable(fam)], comment: 'unmapped port' },
      ],
    });
  }
  if (host) {
    // macvlan0 is ours: only our flows' replies cross it. The client side is
    // guarded only when it did not forward before we came (see forwardGuard).
    const outIf = n.iifname(options.macvlan);
    const rules: n.Rule[] = [
      { pieces: [outIf, n.ctMarkIs(options.fwmark), n.accept] },
      { pieces: [outIf, n.counter, n.drop], comment: 'not an egress flow' },
    ];
    if (forwardGuard) {
      rules.push({ pieces: [inIf, n.ctMarkIs(options.fwmark), n.accept] }, { pieces: [inIf, n.counter, n.drop], comment: 'not an egress flow' });
    }
    chains.push({ name: forwardGuard ? FORWARD_GUARD_CHAIN : 'forward', type: 'filter', hook: 'forward', priority: 0, rules });
  }
  return { family: fam === 4 ? 'ip' : 'ip6', name: options.table, chains };
}
