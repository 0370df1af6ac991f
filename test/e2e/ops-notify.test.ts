/**
 * systemd's notify protocol, for real: a unix datagram socket stands in for
 * systemd (test/lab/notify-listener.py), the daemon gets NOTIFY_SOCKET as a
 * Type=notify unit would, and the messages arrive in order: READY=1 only once
 * the network is set up and the listener accepts (the listener script tries a
 * connection the moment each datagram arrives), RELOADING=1 then READY=1
 * around a SIGHUP reload, STOPPING=1 when SIGTERM starts the drain, and
 * WATCHDOG=1 when systemd asks for it (WATCHDOG_USEC).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { exited, startRouter, until } from '../lab/ops.js';
import { ensureBuilt } from '../unit/dist.js';

const [A] = ADDR.inet as unknown as [string];
const dir = mkdtempSync(join(tmpdir(), 'erl-notify-'));
let lab: Lab;
beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ http: [`${A}:8000`] });
}, 60_000);
afterAll(async () => { await lab?.destroy(); rmSync(dir, { recursive: true, force: true }); });

describe('NOTIFY_SOCKET', () => {
  it('READY=1 after the listener accepts; RELOADING=1/READY=1 around SIGHUP; STOPPING=1 on SIGTERM; WATCHDOG=1', async () => {
    const sock = join(dir, 'notify');
    const rules = join(dir, 'rules');
    writeFileSync(rules, `${A}\n`);
    const listener = await lab.spawnReady('pod', ['python3', join(ROOT, 'test/lab/notify-listener.py'), sock, ADDR.pod, '8080', '30'], 'listening');
    const messages = () => listener.output().split('\n').filter((l) => l.startsWith('{"msg"')).map((l) => JSON.parse(l) as { msg: string; accepting: boolean });
    const p = await startRouter(lab, 'pod', ['daemon'], {
      ...lab.routerEnv({ EGRESS_ROUTER_MODE: 'http-proxy' }), EGRESS_HTTP_PROXY_DESTINATION_FILE: rules,
      NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000',
    } as Record<string, string>);
    await until(() => messages().some((m) => m.msg === 'WATCHDOG=1'));
    p.kill('SIGHUP');
    await until(() => messages().filter((m) => m.msg.startsWith('READY=1')).length >= 2);
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
    await until(() => messages().some((m) => m.msg.startsWith('STOPPING=1')));
    const seen = messages().filter((m) => m.msg !== 'WATCHDOG=1');
    expect(seen.map((m) => m.msg.split('\n')[0])).toEqual(['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
    // The first READY=1 found the proxy accepting already; nothing was sent before it.
    expect(seen[0]).toMatchObject({ accepting: true });
    expect(seen[0]!.msg).toContain('STATUS=http-proxy generation 1');
    expect(seen[2]!.msg).toContain('STATUS=http-proxy generation 2');
    // SIGTERM closed the listener before STOPPING=1 was read, or right after: either way no READY follows it.
    expect(p.output()).not.toContain('notify failed');
  });

  it('an abstract NOTIFY_SOCKET (unsupported by the addon) is refused with a warning; the proxy still runs', async () => {
    const p = await startRouter(lab, 'pod', ['http-proxy', '--port', '8081'], { EGRESS_HTTP_PROXY_DESTINATION: A, NOTIFY_SOCKET: '@egress-test' });
    expect(p.output()).toContain('abstract NOTIFY_SOCKET is not supported');
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
  });
});
