// resolv.conf followed while running (issue 9): in-place edits (a pod's
// bind-mounted file), symlink swaps (a host's), and the Watcher asking the
// new nameserver at its next re-resolution.
import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { ResolvConfFile } from '../../src/dns/resolv-conf-file.js';
import type { ResolvConf } from '../../src/dns/resolv-conf.js';
import { Watcher } from '../../src/dns/watcher.js';

const dir = mkdtempSync(join(tmpdir(), 'erut-resolv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ResolvConfFile', () => {
  it('re-reads an edited file on the next lookup, even unwatched (the per-lookup stat)', () => {
    const path = join(dir, 'inplace.conf');
    writeFileSync(path, 'nameserver 10.0.0.1\n');
    const f = new ResolvConfFile(path);
    expect(f.current().nameservers).toEqual(['10.0.0.1']);
    writeFileSync(path, 'nameserver 10.0.0.2\noptions timeout:1\n');
    expect(f.current()).toEqual({ nameservers: ['10.0.0.2'], timeoutMs: 1000, attempts: 2 });
  });

  it('notices a symlink swap by itself, again and again, and says what changed', async () => {
    const path = join(dir, 'resolv.conf');
    writeFileSync(join(dir, 'a'), 'nameserver 10.0.0.1\n');
    writeFileSync(join(dir, 'b'), 'nameserver 10.0.0.2\n');
    writeFileSync(join(dir, 'c'), 'nameserver 10.0.0.3\n');
    symlinkSync(join(dir, 'a'), path);
    const f = new ResolvConfFile(path).watch();
    const seen: string[] = [];
    f.on('change', (c: ResolvConf) => seen.push(c.nameservers[0]!));
    try {
      for (const next of ['b', 'c']) {
        symlinkSync(join(dir, next), join(dir, 'tmp-link'));
        renameSync(join(dir, 'tmp-link'), path);
        await until(() => seen.length === ['b', 'c'].indexOf(next) + 1, 2000);
      }
      expect(seen).toEqual(['10.0.0.2', '10.0.0.3']);
    } finally {
      f.close();
    }
  });
});

describe('Watcher with a followed resolv.conf', () => {
  let one: DnsServer;
  let two: DnsServer;
  const port = 19600 + (process.pid % 300);
  beforeAll(async () => {
    one = await startDnsServer(null, { address: '127.0.0.1', port, zone: { 'n.example': { A: ['192.0.2.1'], ttl: 1 } } });
    two = await startDnsServer(null, { address: '127.0.0.2', port, zone: { 'n.example': { A: ['192.0.2.2'], ttl: 1 } } });
  });
  afterAll(async () => { await one?.stop(); await two?.stop(); });

  it('asks the new nameserver at the next re-resolution', async () => {
    const path = join(dir, 'watcher.conf');
    writeFileSync(path, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    const f = new ResolvConfFile(path);
    const w = new Watcher('n.example', { conf: () => f.current(), port, minTtl: 1, maxTtl: 2 });
    try {
      await w.start();
      expect(w.addresses).toEqual(['192.0.2.1']);
      writeFileSync(path, 'nameserver 127.0.0.2\noptions timeout:1 attempts:1\n');
      await until(() => w.addresses[0] === '192.0.2.2', 3000);
    } finally {
      w.stop();
    }
  });
});
