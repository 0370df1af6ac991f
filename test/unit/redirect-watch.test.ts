/**
 * The EGRESS_DESTINATION_FILE watcher (src/engines/redirect/watch.ts) with a
 * fake apply: it must start from what set-up applied, so a ConfigMap change
 * that lands between set-up and the first poll is applied, not taken as the
 * baseline.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRedirectConfig, type RedirectConfig } from '../../src/config/redirect.js';
import { parseOptions } from '../../src/config/options.js';
import { createLogger } from '../../src/observe/log.js';
import { watchDestinationFile } from '../../src/engines/redirect/watch.js';

const dir = mkdtempSync(join(tmpdir(), 'erut-watch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function watch(name: string, applied: string, now: string) {
  const path = join(dir, name);
  const config = parseRedirectConfig({ ...V4, EGRESS_DESTINATION: applied });
  // The ConfigMap changes after set-up read it, before the watcher's first poll.
  writeFileSync(path, now);
  const seen: RedirectConfig[] = [];
  const stop = watchDestinationFile({ path, applied, config, options: parseOptions({}), log, guard: false, intervalMs: 20, apply: async (c) => { seen.push(c); } });
  return { seen, stop, path };
}

describe('redirect file watcher', () => {
  it('applies a change made between set-up and the first poll', async () => {
    const w = watch('early', '80 tcp 203.0.113.25\n', '80 tcp 203.0.113.26\n');
    await sleep(150);
    w.stop();
    expect(w.seen.map((c) => c.destinations)).toEqual([{ mappings: [{ protocol: 'tcp', localPort: 80, ip: '203.0.113.26', remotePort: 80 }] }]);
  });
  it('applies nothing while the file holds what set-up applied, then each later change once', async () => {
    const w = watch('same', '80 tcp 203.0.113.25\n', '80 tcp 203.0.113.25\n');
    await sleep(100);
    expect(w.seen).toEqual([]);
    writeFileSync(w.path, '203.0.113.30\n');
    await sleep(100);
    w.stop();
    expect(w.seen.map((c) => c.destinations)).toEqual([{ mappings: [], fallback: '203.0.113.30' }]);
  });
  it('a bad new value is not applied', async () => {
    const w = watch('bad', '80 tcp 203.0.113.25\n', '80 tcp nowhere\n');
    await sleep(100);
    w.stop();
    expect(w.seen).toEqual([]);
  });
});
