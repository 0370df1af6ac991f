/**
 * The systemd units as installed: `make install` into a temporary DESTDIR
 * puts the command, the units and the sysctl.d file in place; every unit
 * passes `systemd-analyze verify`, and the sandboxing gate holds
 * (`systemd-analyze security --offline=true --threshold=20`: exposure at
 * most 2.0). Needs no systemd running.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, ensureBuilt } from './dist.js';

const dest = mkdtempSync(join(tmpdir(), 'erut-install-'));
const UNITDIR = join(dest, 'usr/local/lib/systemd/system');
const BIN = join(dest, 'usr/local/bin/egress-router');
afterAll(() => rmSync(dest, { recursive: true, force: true }));

let install: ReturnType<typeof spawnSync>;
beforeAll(async () => {
  await ensureBuilt();
  install = spawnSync('make', ['-s', 'install', `DESTDIR=${dest}`], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
}, 150_000);

/** Each installed unit, as an instance for templates, with ExecStart pointing into DESTDIR so verify finds the program. */
function staged(): string[] {
  const dir = mkdtempSync(join(dest, 'verify-'));
  return readdirSync(UNITDIR).filter((u) => u.endsWith('.service')).map((u) => {
    const name = u.replace('@.service', '@test.service');
    writeFileSync(join(dir, name), readFileSync(join(UNITDIR, u), 'utf8').replaceAll('/usr/local/bin/egress-router', BIN));
    return join(dir, name);
  });
}

describe('make install (DESTDIR)', () => {
  it('installs the command, the units and the sysctl.d file', () => {
    expect(install.status, String(install.stderr)).toBe(0);
    expect(existsSync(join(UNITDIR, 'egress-router@.service'))).toBe(true);
    expect(readFileSync(join(dest, 'usr/local/lib/sysctl.d/60-egress-router.conf'), 'utf8')).toContain('net/ipv4/conf/macvlan0/arp_notify = 1');
    const r = spawnSync(BIN, ['check', 'daemon'], { encoding: 'utf8', env: { PATH: process.env.PATH, EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1', EGRESS_DESTINATION: '80 tcp 203.0.113.25' } });
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('daemon: metrics off, drain 30 s');
    // Runtime dependencies only: the test tooling stays behind.
    expect(existsSync(join(dest, 'usr/local/lib/egress-router/node_modules/prom-client'))).toBe(true);
    expect(existsSync(join(dest, 'usr/local/lib/egress-router/node_modules/vitest'))).toBe(false);
  });

  it('the template unit reads /etc/egress-router/%i.env and speaks the notify protocol from the main PID', () => {
    const u = readFileSync(join(UNITDIR, 'egress-router@.service'), 'utf8');
    expect(u).toMatch(/^EnvironmentFile=\/etc\/egress-router\/%i\.env$/m);
    expect(u).toMatch(/^Type=notify$/m);
    expect(u).toMatch(/^NotifyAccess=main$/m);
    expect(u).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    expect(u).toMatch(/^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE$/m);
  });

  it('systemd-analyze verify: clean on every unit', () => {
    for (const unit of staged()) {
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', unit], { encoding: 'utf8' });
      expect(r.stderr + r.stdout, unit).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('systemd-analyze security --offline: exposure at most 2.0 (gate: --threshold=20)', () => {
    for (const unit of staged()) {
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=20', '--no-pager', unit], { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const level = Number(/Overall exposure level for .*: (\d+\.\d+)/.exec(r.stdout)?.[1]);
      expect(level).toBeLessThanOrEqual(2.0);
    }
  });
});
