/**
 * The Containerfile cannot be built here (no container engine): check what
 * can be checked. Every COPY source exists (in the repository for the build
 * context, in the build stage's output for --from=build) and is not excluded
 * by .containerignore, and the entrypoint is the command the examples run.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ROOT, ensureBuilt } from './dist.js';

/** The image name every example uses (examples.test.ts checks the same). */
const IMAGE = 'egress-router:latest';

interface Instruction { stage: number; op: string; args: string }

/** Instructions with continuation lines joined, numbered by stage. */
export function parseContainerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m || line.trim().startsWith('#')) continue;
    if (m[1] === 'FROM') stage++;
    out.push({ stage, op: m[1]!, args: m[2]!.trim() });
  }
  return out;
}

/** Where a COPY source comes from on this machine: the context, or the build stage's WORKDIR mapped to the repository. */
export function copySources(ins: Instruction[]): { from: 'context' | 'build'; path: string }[] {
  const workdir = new Map<number, string>();
  const out: { from: 'context' | 'build'; path: string }[] = [];
  for (const i of ins) {
    if (i.op === 'WORKDIR') workdir.set(i.stage, i.args);
    if (i.op !== 'COPY') continue;
    const words = i.args.split(/\s+/);
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    for (const src of paths.slice(0, -1)) {
      if (from === undefined) out.push({ from: 'context', path: src.replace(/\/$/, '') });
      else {
        // The build stage is stage 0, whose WORKDIR mirrors the repository root.
        const base = workdir.get(0) ?? '/';
        if (!src.startsWith(base + '/')) throw new Error(`COPY --from=${from} ${src}: outside the build stage's ${base}`);
        out.push({ from: 'build', path: src.slice(base.length + 1).replace(/\/$/, '') });
      }
    }
  }
  return out;
}

const text = readFileSync(join(ROOT, 'Containerfile'), 'utf8');
const ins = parseContainerfile(text);
const ignored = readFileSync(join(ROOT, '.containerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

describe('Containerfile', () => {
  beforeAll(ensureBuilt, 120_000);

  it('copies only what exists: context sources in the repository, build outputs after `tsc`', () => {
    const sources = copySources(ins);
    expect(sources.map((s) => s.path)).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src', 'bin', 'dist', 'node_modules']));
    for (const s of sources) {
      expect(existsSync(join(ROOT, s.path)), `${s.from} ${s.path}`).toBe(true);
      if (s.from === 'context') expect(ignored, `${s.path} is excluded by .containerignore`).not.toContain(s.path.split('/')[0]);
    }
  });

  it('builds from Node 20 slim in both stages and installs what set-up runs', () => {
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms).toHaveLength(2);
    for (const f of froms) expect(f).toMatch(/node:20-[a-z]+-slim\b/);
    const apt = ins.filter((i) => i.op === 'RUN' && i.stage === 1).map((i) => i.args).join(' ');
    for (const pkg of ['nftables', 'iproute2', 'iputils-arping', 'conntrack']) expect(apt).toContain(` ${pkg} `);
  });

  it('has the entrypoint every example runs, and that binary is what bin/ provides', () => {
    const entry = ins.filter((i) => i.op === 'ENTRYPOINT').map((i) => JSON.parse(i.args) as string[]);
    expect(entry).toEqual([['egress-router']]);
    expect(text).toContain('ln -s /opt/egress-router/bin/egress-router /usr/local/bin/egress-router');
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin).toEqual({ 'egress-router': 'bin/egress-router' });
    // The examples run the image by its name, with the entrypoint or `args` only.
    const dir = join(ROOT, 'examples', 'kubernetes');
    let ours = 0;
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml'))) {
      for (const d of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
        const o = d.toJS() as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
        const spec = o?.kind === 'Pod' ? o.spec : o?.spec?.template?.spec;
        for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])]) {
          if (c.image !== IMAGE) continue;
          ours++;
          expect(c.command ?? ['egress-router'], `${f} ${c.name}`).toEqual(['egress-router']);
        }
      }
    }
    expect(ours).toBeGreaterThan(10);
  });
});
