/**
 * Kernel path with many IP lines: past MAP_AFTER single-address ports, the
 * ports share one `tcp dport` map (plan/nft-dns-proxy.ts). Clients of a port
 * in the map reach that port's own target, and a reload that changes the map
 * moves new connections to the new target.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { startRouter, type Proc } from '../lab/ops.js';
import { ensureBuilt } from '../unit/dist.js';
import { MAP_AFTER } from '../../src/plan/nft-dns-proxy.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const N = MAP_AFTER + 4;
/** Port 8000+i to A:9000+i, except that the last port goes to `last`. */
const table = (last: string) => Array.from({ length: N }, (_, i) => `${8000 + i} ${i === N - 1 ? last : A} ${9000 + i}`).join('\n') + '\n';

describe('dns-proxy, kernel data path, many IP lines in one map', () => {
  let lab: Lab;
  let proxy: Proc;
  const dir = mkdtempSync(join(tmpdir(), 'erl-dnsmap-'));
  const file = join(dir, 'forwards');
  const banner = (port: number) => lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:${port}`], { input: '', timeoutMs: 8000 });

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ tcp: Array.from({ length: N }, (_, i) => [`${A}:${9000 + i}`, `${B}:${9000 + i}`]).flat() });
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'dns-proxy' });
    expect(init.code, init.stderr).toBe(0);
    writeFileSync(file, table(A));
    proxy = await startRouter(lab, 'pod', ['daemon'], { ...lab.routerEnv({ EGRESS_ROUTER_MODE: 'dns-proxy' }), EGRESS_DNS_PROXY_MODE: 'kernel', EGRESS_DNS_PROXY_DESTINATION_FILE: file } as Record<string, string>);
  });
  afterAll(async () => {
    proxy?.kill('SIGKILL');
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one map rule carries the ports, and each port reaches its own target', async () => {
    const list = await lab.exec('pod', ['nft', 'list', 'table', 'inet', 'egress_router_dns_proxy']);
    expect(list.stdout).toContain('dnat ip to tcp dport map {');
    expect(list.stdout).not.toMatch(/tcp dport 8000 counter/);
    for (const i of [0, 7, N - 1]) {
      const r = await banner(8000 + i);
      expect(r.stdout).toMatch(new RegExp(`^${A.replace(/\./g, '\\.')}:${9000 + i} sees `));
    }
  });

  it('a reload that changes one entry moves that port only', async () => {
    writeFileSync(file, table(B));
    proxy.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while (!/configuration reloaded/.test(proxy.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(proxy.output()).toMatch(/configuration reloaded/);
    expect((await banner(8000 + N - 1)).stdout).toMatch(new RegExp(`^${B.replace(/\./g, '\\.')}:${9000 + N - 1} sees `));
    expect((await banner(8001)).stdout).toMatch(new RegExp(`^${A.replace(/\./g, '\\.')}:9001 sees `));
  });
});
