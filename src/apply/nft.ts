/**
 * The only place that talks to nftables: `nft -j -f -` with one JSON batch,
 * which the kernel applies as a single transaction (all or nothing).
 */
import { run } from './run.js';

export class NftError extends Error {}

export async function applyNft(batch: { nftables: unknown[] }): Promise<void> {
  const r = await run('nft', ['-j', '-f', '-'], JSON.stringify(batch));
  if (r.code !== 0) throw new NftError(`nft rejected the ruleset: ${r.stderr.trim().split('\n')[0] ?? r.code}`);
}

/** Check mode: parse and validate in the kernel without committing. */
export async function checkNft(batch: { nftables: unknown[] }): Promise<void> {
  const r = await run('nft', ['-c', '-j', '-f', '-'], JSON.stringify(batch));
  if (r.code !== 0) throw new NftError(`nft rejected the ruleset: ${r.stderr.trim().split('\n')[0] ?? r.code}`);
}

/** True when `family name` exists, optionally with the named chain. */
export async function nftHas(family: string, table: string, chain?: string): Promise<boolean> {
  const args = chain ? ['list', 'chain', family, table, chain] : ['list', 'table', family, table];
  return (await run('nft', args)).code === 0;
}

export async function deleteTable(family: string, table: string): Promise<void> {
  if (await nftHas(family, table)) await applyNft({ nftables: [{ delete: { table: { family, name: table } } }] });
}
