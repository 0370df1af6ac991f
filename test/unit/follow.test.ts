/**
 * The shared file follower (src/lifecycle/follow.ts) driving the redirect
 * engine with a fake apply: it starts from what set-up applied (a change made
 * between set-up and the watch is applied, not taken as the baseline), sees
 * every ConfigMap-style symlink swap, applies each change once, and a bad
 * value is rejected with its error line while the running config stays.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRedirectConfig, type RedirectConfig } from '../../src/config/redirect.js';
import { parseOptions } from '../../src/config/options.js';
import { createLogger } from '../../src/observe/log.js';
import { followFile } from '../../src/lifecycle/follow.js';
import { redirectEngine } from '../../src/engines/redirect/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'erut-follow-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function follow(path: string, applied: string) {
  const seen: RedirectConfig[] = [];
  const errors: string[] = [];
  const engine = redirectEngine({ config: parseRedirectConfig({ ...V4, EGRESS_DESTINATION: applied }), options: parseOptions({}), log, guard: false, apply: async (c) => { seen.push(c); } });
  const f = followFile({
    path, varName: 'EGRESS_DESTINATION_FILE', initial: applied, debounceMs: 30, pollMs: 60_000,
    onError: (e) => errors.push(e),
    onChange: async (text) => { const r = await engine.reconfigure(text); if (!r.ok) errors.push(r.error); },
  });
  return { seen, errors, f, engine };
}
const mapping = (ip: string) => ({ mappings: [{ protocol: 'tcp', localPort: 80, ip, remotePort: 80 }] });

describe('file follower', () => {
  it('applies a change made between set-up and the start of the watch', async () => {
    const path = join(dir, 'early');
    writeFileSync(path, '80 tcp 203.0.113.26\n');
    const w = follow(path, '80 tcp 203.0.113.25\n');
    await sleep(100);
    w.f.close();
    expect(w.seen.map((c) => c.destinations)).toEqual([mapping('203.0.113.26')]);
  });

  it('applies nothing while the file holds what set-up applied, then each later change once', async () => {
    const path = join(dir, 'same');
    writeFileSync(path, '80 tcp 203.0.113.25\n');
    const w = follow(path, '80 tcp 203.0.113.25\n');
    await sleep(100);
    expect(w.seen).toEqual([]);
    writeFileSync(path, '203.0.113.30\n');
    await sleep(150);
    w.f.close();
    expect(w.seen.map((c) => c.destinations)).toEqual([{ mappings: [], fallback: '203.0.113.30' }]);
  });

  it('sees every kubelet-style ..data symlink swap, not only the first', async () => {
    const cm = join(dir, 'cm');
    mkdirSync(cm);
    const version = (n: number, ip: string) => {
      mkdirSync(join(cm, `..v${n}`));
      writeFileSync(join(cm, `..v${n}`, 'destination'), `80 tcp ${ip}\n`);
      symlinkSync(`..v${n}`, join(cm, '..data_tmp'));
      renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
    };
    version(1, '203.0.113.1');
    symlinkSync('..data/destination', join(cm, 'destination'));
    const w = follow(join(cm, 'destination'), '80 tcp 203.0.113.1\n');
    for (let i = 2; i <= 4; i++) { version(i, `203.0.113.${i}`); await sleep(150); }
    w.f.close();
    expect(w.seen.map((c) => c.destinations.mappings[0]!.ip)).toEqual(['203.0.113.2', '203.0.113.3', '203.0.113.4']);
  });

  it('a bad new value is rejected with its error line and the running config stays', async () => {
    const path = join(dir, 'bad');
    writeFileSync(path, '80 tcp 203.0.113.25\n');
    const w = follow(path, '80 tcp 203.0.113.25\n');
    writeFileSync(path, '80 tcp nowhere\n');
    await sleep(150);
    w.f.close();
    expect(w.seen).toEqual([]);
    expect(w.errors).toEqual(["EGRESS_DESTINATION value '80 tcp nowhere' is invalid"]);
    expect(w.engine.config.destinations).toEqual(mapping('203.0.113.25'));
  });

  it('check(true) (SIGHUP) reloads unchanged content; a missing file is an error, not an empty config', async () => {
    const path = join(dir, 'hup');
    writeFileSync(path, '80 tcp 203.0.113.25\n');
    const w = follow(path, '80 tcp 203.0.113.25\n');
    await w.f.check(true, 'SIGHUP');
    rmSync(path);
    await w.f.check(true, 'SIGHUP');
    w.f.close();
    expect(w.seen.map((c) => c.destinations)).toEqual([mapping('203.0.113.25')]);
    expect(w.errors).toEqual([`EGRESS_DESTINATION_FILE '${path}' cannot be read: ENOENT`]);
  });
});
