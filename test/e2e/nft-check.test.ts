/**
 * nft itself must accept every ruleset `render` prints: the text form with
 * `nft -c -f FILE` and the JSON batch with `nft -c -j -f FILE` (check mode:
 * parsed and validated by the kernel, never committed). It runs inside a
 * throwaway network namespace so a mistake can never touch the host's tables.
 *
 * nft cannot read `-f -` or /dev/stdin when Node gives it a socket as stdin,
 * so each ruleset goes through a temporary file.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt } from '../unit/dist.js';
import { dnsProxyTable } from '../../src/plan/nft-dns-proxy.js';
import { toReplaceBatch, toText } from '../../src/plan/nft.js';

const isRoot = process.getuid?.() === 0;
const NS = `erut-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

function sh(argv: string[], env?: NodeJS.ProcessEnv) {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 20_000, env: env ?? process.env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const V6 = { EGRESS_SOURCE: '2001:db8:1::99/64', EGRESS_GATEWAY: '2001:db8:1::1' };
const MAP4 = '80 tcp 203.0.113.25\n8080 tcp 203.0.113.26 80\n53 udp 203.0.113.27 5353';
const MAP6 = '80 tcp 2001:db8:2::25\n8080 tcp 2001:db8:2::26 80\n53 udp 2001:db8:2::27 5353';

/** Valid inputs covering each shape of ruleset render can print. */
const CASES: Record<string, Record<string, string>> = {
  'ipv4 pod, mappings, no fallback': { ...V4, EGRESS_DESTINATION: MAP4 },
  'ipv4 pod, mappings and fallback': { ...V4, EGRESS_DESTINATION: `${MAP4}\n203.0.113.28` },
  'ipv4 pod, fallback only': { ...V4, EGRESS_DESTINATION: '203.0.113.28' },
  'ipv6 pod, mappings, no fallback': { ...V6, EGRESS_DESTINATION: MAP6 },
  'ipv6 pod, mappings and fallback': { ...V6, EGRESS_DESTINATION: `${MAP6}\n2001:db8:2::28` },
  'ipv4 host, mappings, no fallback': { ...V4, EGRESS_PLACEMENT: 'host', EGRESS_DESTINATION: MAP4 },
  'ipv4 host, fallback, custom table/mark/interface': {
    ...V4, EGRESS_PLACEMENT: 'host', EGRESS_NFT_TABLE: 'er_test', EGRESS_FWMARK: '0x1234', EGRESS_CLIENT_INTERFACE: 'br-ex',
    EGRESS_DESTINATION: `${MAP4}\n203.0.113.28`,
  },
  'ipv6 host, mappings and fallback': { ...V6, EGRESS_PLACEMENT: 'host', EGRESS_DESTINATION: `${MAP6}\n2001:db8:2::28` },
};

describe.skipIf(!isRoot)('nft -c accepts what render prints (in a throwaway netns)', () => {
  let dir = '';
  let nsCreated = false;

  beforeAll(async () => {
    await ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'erut-nft-'));
    const r = sh(['ip', 'netns', 'add', NS]);
    if (r.code !== 0) throw new Error(`ip netns add ${NS} failed: ${r.stderr.trim()}`);
    nsCreated = true;
  }, 120_000);

  // Runs even when beforeAll or a test failed: never leave a namespace behind.
  afterAll(() => {
    if (nsCreated) sh(['ip', 'netns', 'del', NS]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function render(env: Record<string, string>, json: boolean): string {
    const r = sh([process.execPath, BIN, 'render', ...(json ? ['--json'] : [])], { PATH: process.env.PATH, ...env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  }

  /** `nft -c` on the ruleset in a file, inside the namespace; '' when accepted. */
  function nftCheck(name: string, ruleset: string, json: boolean): string {
    const file = join(dir, `${name.replace(/\W+/g, '_')}.${json ? 'json' : 'nft'}`);
    writeFileSync(file, ruleset);
    const r = sh(['ip', 'netns', 'exec', NS, 'nft', '-c', ...(json ? ['-j'] : []), '-f', file]);
    return r.code === 0 ? '' : `nft exited ${r.code}: ${r.stderr.trim()}\n--- ${file}\n${ruleset}`;
  }

  for (const [name, env] of Object.entries(CASES)) {
    it(`text: ${name}`, () => {
      const text = render(env, false);
      expect(text).toMatch(/^table ip6? \w+ \{\n/);
      expect(nftCheck(name, text, false)).toBe('');
    });
    it(`json: ${name}`, () => {
      const json = render(env, true);
      expect(JSON.parse(json).nftables.length).toBeGreaterThan(4);
      expect(nftCheck(name, json, true)).toBe('');
    });
  }

  // The DNS proxy's kernel table with 1000 ports (one tcp dport map per family) and a spread port.
  const dnsTable = dnsProxyTable([
    ...Array.from({ length: 1000 }, (_, i) => ({ port: 20000 + i, remotePort: 80 + (i % 3), addresses: [`203.0.113.${(i % 250) + 1}`, `2001:db8::${i + 1}`], comment: `line ${i}` })),
    { port: 9000, remotePort: 443, addresses: ['203.0.113.200', '203.0.113.201'], comment: 'two' },
  ], 'erut_dns');
  it('text: dns-proxy kernel table, 1000 ports', () => expect(nftCheck('dns-1000', toText(dnsTable), false)).toBe(''));
  it('json: dns-proxy kernel table, 1000 ports', () => expect(nftCheck('dns-1000', JSON.stringify(toReplaceBatch(dnsTable)), true)).toBe(''));

  it('the check really checks: nft -c rejects a broken ruleset', () => {
    const bad = render(CASES['ipv4 pod, mappings, no fallback']!, false).replace('dnat to 203.0.113.25:80', 'dnat to 203.0.113.25:99999');
    expect(nftCheck('broken', bad, false)).toMatch(/^nft exited 1: /);
  });

  it('check mode commits nothing: the namespace has no ruleset afterwards', () => {
    const r = sh(['ip', 'netns', 'exec', NS, 'nft', 'list', 'ruleset']);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

// Visible in the report instead of a silent pass when not root.
describe.skipIf(isRoot)('nft -c accepts what render prints', () => {
  it.skip('needs root (ip netns add, nft): run as root, e.g. in .ci/run', () => {});
});
