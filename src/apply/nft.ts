/**
 * The only place that talks to nftables: `nft -j -f FILE` with one JSON
 * batch, which the kernel applies as a single transaction (all or nothing).
 * A file, not stdin: Node's child stdin is a socket, which nft cannot open
 * as /dev/stdin.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './run.js';
import { elementOnly, txJson, type Transaction } from '../plan/nft-tx.js';

export class NftError extends Error {}

async function nftFile(flags: string[], batch: { nftables: unknown[] }): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'egress-router-nft-'));
  try {
    const file = join(dir, 'ruleset.json');
    await writeFile(file, JSON.stringify(batch));
    const r = await run('nft', [...flags, '-j', '-f', file]);
    if (r.code !== 0) throw new NftError(`nft rejected the ruleset: ${r.stderr.trim().split('\n')[0] ?? r.code}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const applyNft = (batch: { nftables: unknown[] }) => nftFile([], batch);

/** Check mode: parse and validate in the kernel without committing. */
export const checkNft = (batch: { nftables: unknown[] }) => nftFile(['-c'], batch);

/** True when `family name` exists, optionally with the named chain. */
export async function nftHas(family: string, table: string, chain?: string): Promise<boolean> {
  const args = chain ? ['list', 'chain', family, table, chain] : ['list', 'table', family, table];
  return (await run('nft', args)).code === 0;
}

/** `nft -j list table` as its list of objects, or undefined when the table does not exist. */
export async function listTableJson(family: string, table: string): Promise<unknown[] | undefined> {
  const r = await run('nft', ['-j', 'list', 'table', family, table]);
  if (r.code !== 0) return undefined;
  return (JSON.parse(r.stdout) as { nftables: unknown[] }).nftables;
}

export async function deleteTable(family: string, table: string): Promise<void> {
  if (await nftHas(family, table)) await applyNft({ nftables: [{ delete: { table: { family, name: table } } }] });
}

/** Where transactions go: the kernel here, a FakeNft (plan/nft-fake.ts) in root-free tests. */
export interface NftBackend {
  run(tx: Transaction): Promise<void>;
}

/**
 * Element-only transactions (name updates) go over netlink (nft-netlink.ts,
 * the project's one element writer: nft's cache fetch made them cost in
 * proportion to the table); everything else, and any element batch the
 * socket cannot send, through `nft -j -f`. The netlink module (a native
 * addon) loads after the first table, off the apply's path.
 */
let elementWriter: Promise<import('./nft-netlink.js').NftElementWriter> | undefined;
const loadElementWriter = () => (elementWriter ??= import('./nft-netlink.js').then((m) => new m.NftElementWriter('inet', '')));

export const kernelNft: NftBackend = {
  async run(tx) {
    if (!elementOnly(tx)) {
      await applyNft(txJson(tx));
      void loadElementWriter().catch(() => {});
      return;
    }
    const [writer, { NftRefused }] = await Promise.all([loadElementWriter(), import('./nft-netlink.js')]);
    try {
      await writer.run(tx);
    } catch (e) {
      // The kernel's own refusal is final, as nft's would be; a socket problem is not.
      if (e instanceof NftRefused) throw e;
      writer.close();
      await applyNft(txJson(tx));
    }
  },
};
