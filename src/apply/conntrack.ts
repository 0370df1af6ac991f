/**
 * Conntrack entries, through the conntrack tool: the firewall judges new
 * flows only, so the flows a policy change now denies are marked (one bit of
 * the ct mark), which makes the firewall judge their packets again. Not
 * deleted: after a deletion the server's next packet would start a new entry
 * in its own direction, and the pod's packets would pass as its replies.
 */
import { run } from './run.js';

export interface Flow {
  readonly proto: string;
  readonly src: string;
  readonly dst: string;
  readonly dport?: number;
}

/** The original-direction tuple of each entry in `conntrack -L` output. */
export function parseConntrack(text: string): Flow[] {
  const out: Flow[] = [];
  for (const line of text.split('\n')) {
    const proto = /^(\S+)/.exec(line)?.[1];
    const src = / src=(\S+)/.exec(line)?.[1];
    const dst = / dst=(\S+)/.exec(line)?.[1];
    const dport = / dport=(\d+)/.exec(line)?.[1];
    if (proto && src && dst) out.push(dport ? { proto, src, dst, dport: Number(dport) } : { proto, src, dst });
  }
  return out;
}

export const conntrackFlows = { list: () => listFlows(), mark: markFlows };

export async function listFlows(): Promise<Flow[]> {
  const flows: Flow[] = [];
  for (const f of ['ipv4', 'ipv6']) {
    const r = await run('conntrack', ['-L', '-f', f]);
    if (r.code === 0) flows.push(...parseConntrack(r.stdout));
  }
  return flows;
}

/** Sets `bit` in the mark of every entry from src to dst, leaving the other bits (exit 1 when there was none: not an error). */
export async function markFlows(src: string, dst: string, bit: number): Promise<void> {
  const family = src.includes(':') ? 'ipv6' : 'ipv4';
  const m = `0x${bit.toString(16)}`;
  const r = await run('conntrack', ['-U', '-f', family, '-s', src, '-d', dst, '-m', `${m}/${m}`]);
  if (r.code > 1) throw new Error(`conntrack -U -s ${src} -d ${dst}: ${r.stderr.trim().split('\n')[0]}`);
}
