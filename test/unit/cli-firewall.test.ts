/**
 * The firewall's commands as operators run them (compiled binary, controlled
 * environment): `check firewall`, `firewall render [--json] [--linear]`,
 * flags over variables, and the one-line errors.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ensureBuilt } from './dist.js';

function run(args: string[], vars: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, ...vars }, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const POLICY = `kind: EgressNetworkPolicy
apiVersion: v1
metadata: {name: default, namespace: project1}
spec:
  egress:
  - {type: Allow, to: {cidrSelector: 1.2.3.0/24}}
  - {type: Allow, to: {dnsName: www.foo.com}}
  - {type: Deny, to: {cidrSelector: 0.0.0.0/0}}
`;
let dir: string;
let env: Record<string, string>;
beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'fw-cli-'));
  writeFileSync(join(dir, 'policy.yaml'), POLICY);
  writeFileSync(join(dir, 'bad.yaml'), POLICY.replace('type: Deny', 'type: Bob'));
  env = { EGRESS_FIREWALL_POLICY: join(dir, 'policy.yaml'), EGRESS_FIREWALL_SOURCES: '10.128.0.0/24', EGRESS_FIREWALL_INTERFACE: 'eth0' };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('egress-router check firewall', () => {
  it('a summary and exit 0', () => {
    const r = run(['check', 'firewall'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').slice(0, 6)).toEqual([
      `firewall: configuration OK (1 policies read from ${join(dir, 'policy.yaml')}, 1 enforced)`,
      'policy project1/default for 10.128.0.0/24 (first match wins):',
      '  1. Allow cidrSelector 1.2.3.0/24', '  2. Allow dnsName www.foo.com', '  3. Deny cidrSelector 0.0.0.0/0', '  4. allow everything else',
    ]);
  });
  it('the validator line on stderr and exit 1', () => {
    expect(run(['check', 'firewall'], { ...env, EGRESS_FIREWALL_POLICY: join(dir, 'bad.yaml') })).toEqual(
      { code: 1, stdout: '', stderr: 'spec.egress[2].type: Invalid value: "Bob": invalid policy type\n' });
  });
});

describe('egress-router firewall render', () => {
  it('nft text; flags override variables', () => {
    const r = run(['firewall', 'render', '--interface', 'ens3', '--table', 'fw_test'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^table inet fw_test \{/);
    expect(r.stdout).toContain('oifname != "ens3" accept');
    expect(r.stdout).toContain('ip daddr vmap @p0_cidr4');
  });
  it('--json is the batch; --linear the naive chain', () => {
    const j = JSON.parse(run(['firewall', 'render', '--json'], env).stdout) as { nftables: object[] };
    expect(j.nftables.slice(0, 3)).toEqual([{ metainfo: { json_schema_version: 1 } }, { add: { table: { family: 'inet', name: 'egress_router_firewall' } } },
      { delete: { table: { family: 'inet', name: 'egress_router_firewall' } } }]);
    expect(run(['firewall', 'render', '--linear'], env).stdout).toContain('ip daddr 1.2.3.0/24 goto p0_r1');
  });
  it('errors are one line, exit 1', () => {
    expect(run(['firewall', 'render'], { ...env, EGRESS_FIREWALL_MAX_RULES: '2' })).toEqual(
      { code: 1, stdout: '', stderr: 'spec.egress: Invalid value: "": too many egress rules (max 2)\n' });
    expect(run(['firewall', 'bogus'], env)).toEqual({ code: 1, stdout: '', stderr: "Unknown firewall action 'bogus', must be render\n" });
    expect(run(['explain', 'firewall', 'x', '1.2.3.4'], env)).toEqual({ code: 1, stdout: '', stderr: "Bad source 'x', must be an IP address\n" });
  });
});
