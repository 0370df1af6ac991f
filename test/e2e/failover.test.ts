/**
 * Bare-metal active/standby with the real keepalived (VRRPv3, 100 ms adverts,
 * nopreempt) and conntrackd (FTFW), configured from examples/host/failover/.
 * A client streams a long upload through redirect mode and opens new
 * connections in a loop while the master's keepalived is stopped, and later
 * while the new master's cable is pulled. Asserted: the backup holds
 * EGRESS_SOURCE within 1 s, the transfer completes byte for byte, new
 * connections succeed and the server sees EGRESS_SOURCE, the returning host
 * does not take the IP back, and one MAC only ever answers for the IP.
 * Timing figures come from a shared 2-core machine: noisy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFailoverLab, FO, type FailoverLab, type Node } from '../lab/failover.js';

interface Attempt { t: number; ms: number; ok: boolean; line: string; error?: string }
interface Download { ok: boolean; bytes: number; total: number; ms: number; maxGapMs: number; error?: string }
interface Stream { ok: boolean; sent: number; sha256: string; server?: { bytes: number; sha256: string; peer: string }; ms: number; maxStallMs: number; error?: string }

const report: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('failover: keepalived + conntrackd, redirect mode, host placement', () => {
  let lab: FailoverLab;
  const mac: Partial<Record<Node, string>> = {};

  beforeAll(async () => {
    lab = await createFailoverLab();
  });
  afterAll(async () => {
    if (report.length) console.log(['failover report (shared 2-core machine: timings are noisy):', ...report].join('\n  '));
    await lab?.destroy();
  });

  /** The takeover: a long upload and a connection loop run while `kill` happens. */
  async function takeover(from: Node, to: Node, kill: () => Promise<void>, label: string) {
    const stream = lab.peer(['stream', FO.vip, String(FO.sink), String(2 * 1024 * 1024), '7000']);
    const download = lab.peer(['download', FO.vip, String(FO.source), String(2 * 1024 * 1024), '7000']);
    const loop = lab.peer(['loop', FO.vip, String(FO.banner), '100', '6500', '65']);
    // Let conntrackd replicate the flow before the master goes away.
    await sleep(2500);
    expect(await lab.holders()).toEqual([from]);
    const t0 = Date.now();
    await kill();
    const held = await lab.waitHolder(to, 5000).then(() => Date.now() - t0);
    mac[to] ??= await lab.macvlanMac(to);
    const added = lab.addrEvents.find((e) => e.node === to && e.added && e.t >= t0 - 50);
    const firstArp = lab.arp.find((r) => r.t >= t0 && r.mac === mac[to]);
    const [streamOut, downOut, loopOut] = await Promise.all([stream.done, download.done, loop.done]);
    const result = JSON.parse(streamOut.at(-1) ?? '{}') as Stream;
    const down = JSON.parse(downOut.at(-1) ?? '{}') as Download;
    const attempts = loopOut.map((l) => JSON.parse(l) as Attempt);
    const failed = attempts.filter((a) => !a.ok);
    const firstOkAfter = attempts.find((a) => a.ok && a.t >= (added?.t ?? t0));
    const start = lab.routerEvents.find((e) => e.node === to && e.what === 'start' && e.t >= t0);
    const ready = lab.routerEvents.find((e) => e.node === to && e.what === 'ready' && e.t >= t0);
    report.push(`${label}: ${from} -> ${to}: IP on ${to} ${added ? added.t - t0 : '?'} ms after the kill (seen by polling at ${held} ms), ` +
      `first ARP reply with ${to}'s MAC at ${firstArp ? firstArp.t - t0 : '?'} ms; long transfer ${result.ok ? 'intact' : 'BROKEN'} ` +
      `(${result.sent} bytes, longest stall ${result.maxStallMs} ms); long download ${down.ok ? 'intact' : 'BROKEN'} (${down.bytes}/${down.total} bytes, longest gap ${down.maxGapMs} ms); new connections ${attempts.length - failed.length}/${attempts.length} ok` +
      (failed.length ? ` (failed: ${failed.map((f) => `${f.t - t0} ms ${f.error}`).join(', ')})` : '') +
      (firstOkAfter ? `, first connection opened after the move answered ${firstOkAfter.t + firstOkAfter.ms - t0} ms after the kill` : '') +
      (start && ready ? `; router unit on ${to} started ${start.t - t0} ms after the kill, ready ${ready.t - t0} ms` : ''));
    return { t0, held, added, result, down, attempts, failed };
  }

  it('the first host to start becomes MASTER and holds the IP; the other stands by with no address and no rules', async () => {
    await lab.startConntrackd('r1');
    await lab.startConntrackd('r2');
    await lab.startKeepalived('r1');
    await lab.waitHolder('r1', 10_000);
    await lab.waitNotify('r1', 'MASTER applied', 10_000);
    await lab.startKeepalived('r2');
    await sleep(1000);
    expect(lab.keepalivedLog('r2')).toContain('Entering BACKUP STATE');
    expect(lab.keepalivedLog('r2')).not.toContain('Entering MASTER STATE');
    expect(await lab.holders()).toEqual(['r1']);
    expect(await lab.hasTable('r1')).toBe(true);
    expect(await lab.hasTable('r2')).toBe(false);
    mac.r1 = await lab.macvlanMac('r1');
    const c = await lab.exec('client', ['curl', '-sS', '-m', '3', `telnet://${FO.vip}:${FO.banner}`]);
    expect(c.stdout).toBe(`${FO.server}:${FO.banner} sees ${FO.vip}:${c.stdout.split(':').at(-1)}`);
  });

  it("the master's keepalived stops: the backup holds the IP within 1 s and established and new flows carry on", async () => {
    const r = await takeover('r1', 'r2', () => lab.stopKeepalived('r1'), 'keepalived stopped');
    expect(r.added, 'EGRESS_SOURCE added on r2').toBeDefined();
    expect(r.added!.t - r.t0).toBeLessThan(1000);
    expect(r.result).toMatchObject({ ok: true, server: { peer: FO.vip } });
    expect(r.result.server!.bytes).toBe(r.result.sent);
    expect(r.result.sent).toBeGreaterThan(8 * 1024 * 1024);
    expect(r.down).toMatchObject({ ok: true });
    expect(r.failed).toEqual([]);
    for (const a of r.attempts) expect(a.line).toMatch(new RegExp(` sees ${FO.vip.replace(/\./g, '\\.')}:\\d+$`));
    expect(await lab.holders()).toEqual(['r2']);
    expect(await lab.hasTable('r1')).toBe(false);
  });

  it('the old master comes back as BACKUP and does not take the IP from under live flows (nopreempt)', async () => {
    const stream = lab.peer(['stream', FO.vip, String(FO.sink), String(1024 * 1024), '3000']);
    await lab.startKeepalived('r1');
    for (let i = 0; i < 10; i++) {
      await sleep(200);
      expect(await lab.holders()).toEqual(['r2']);
    }
    const result = JSON.parse((await stream.done).at(-1) ?? '{}') as Stream;
    expect(result).toMatchObject({ ok: true, server: { peer: FO.vip } });
    // Its log since the restart: BACKUP, never MASTER.
    const since = lab.keepalivedLog('r1').split('Starting Keepalived').at(-1)!;
    expect(since).toContain('Entering BACKUP STATE');
    expect(since).not.toContain('Entering MASTER STATE');
    expect(await lab.hasTable('r1')).toBe(false);
  });

  it("the master's link is cut: the backup holds the IP within 1 s and established and new flows carry on", async () => {
    const r = await takeover('r2', 'r1', () => lab.cutLink('r2'), 'link cut');
    expect(r.added, 'EGRESS_SOURCE added on r1').toBeDefined();
    expect(r.added!.t - r.t0).toBeLessThan(1000);
    expect(r.result).toMatchObject({ ok: true, server: { peer: FO.vip } });
    expect(r.result.server!.bytes).toBe(r.result.sent);
    expect(r.down).toMatchObject({ ok: true });
    expect(r.failed).toEqual([]);
    // The cut host went to FAULT and let go of everything.
    expect(lab.keepalivedLog('r2')).toContain('Entering FAULT STATE');
    expect(await lab.holders()).toEqual(['r1']);
    expect(await lab.hasTable('r2')).toBe(false);
    // Plugged back in, it stands by.
    const stream = lab.peer(['stream', FO.vip, String(FO.sink), String(1024 * 1024), '2500']);
    await lab.restoreLink('r2');
    for (let i = 0; i < 8; i++) {
      await sleep(200);
      expect(await lab.holders()).toEqual(['r1']);
    }
    expect(JSON.parse((await stream.done).at(-1) ?? '{}')).toMatchObject({ ok: true });
  });

  it('only one host ever answered for the IP: one MAC per moment on the segment, address never on both', () => {
    // Every reply to every request, numbered by request: two hosts answering
    // one request would show two MACs under one number.
    const perRequest = new Map<number, Set<string>>();
    for (const r of lab.arp) perRequest.set(r.seq, (perRequest.get(r.seq) ?? new Set()).add(r.mac));
    expect(perRequest.size).toBeGreaterThan(500);
    const doubles = [...perRequest].filter(([, m]) => m.size > 1);
    expect(doubles, 'requests answered by two MACs').toEqual([]);
    // In order, the owner changed exactly at the two takeovers.
    const macs = lab.arp.map((r) => r.mac);
    const runs = macs.filter((m, i) => i === 0 || m !== macs[i - 1]);
    expect(runs).toEqual([mac.r1, mac.r2, mac.r1]);
    // Address intervals from ip monitor: never held by both at once.
    const held = new Set<Node>();
    for (const e of [...lab.addrEvents].sort((a, b) => a.t - b.t)) {
      if (e.added) held.add(e.node); else held.delete(e.node);
      expect(held.size, `at ${e.t}`).toBeLessThanOrEqual(1);
    }
    report.push(`segment: ${perRequest.size} ARP requests answered (every 20 ms), none by two MACs, MAC runs ${runs.join(' -> ')}; ${lab.addrEvents.length} address events, never on both hosts`);
  });
});
