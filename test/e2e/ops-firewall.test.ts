/**
 * The egress firewall under the shared runner (`egress-router firewall` on
 * the node, which routes the pod network out): the policy's decisions per
 * rule on /metrics from the rules' nft counters, a policy file changed while
 * it runs (reload metrics, RELOADING/READY via the runner), an invalid one
 * kept out with /readyz still 200, and SIGTERM: exit 0 with the rules left in
 * place, as enforcement must not lapse across a restart.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, type Lab } from '../lab/lab.js';
import { allow, deny, policyYaml, probe, routeThroughNode } from '../lab/firewall.js';
import { exited, health, sample, startRouter, until, type Proc } from '../lab/ops.js';
import { ensureBuilt } from '../unit/dist.js';

const [A, B] = ADDR.inet as unknown as [string, string];
const M = '127.0.0.1:9467';
const dir = mkdtempSync(join(tmpdir(), 'erl-opsfw-'));
const policy = join(dir, 'policy.yaml');
let lab: Lab;
let p: Proc;
beforeAll(async () => {
  await ensureBuilt();
  lab = await createLab({ macvlanInPod: false, tcp: [`${A}:80`, `${B}:80`] });
  await routeThroughNode(lab);
}, 60_000);
afterAll(async () => { p?.kill('SIGKILL'); await lab?.destroy(); rmSync(dir, { recursive: true, force: true }); });

const tcp = (host: string) => probe(lab, 'client', 'tcp', host, 80, 3000);
const metrics = async () => (await health(lab, 'node', M, '/metrics')).body;

describe('firewall under the runner', () => {
  it('per-rule decisions on /metrics from the nft counters', async () => {
    writeFileSync(policy, policyYaml([deny(`${B}/32`), allow('0.0.0.0/0')]));
    p = await startRouter(lab, 'node', ['firewall'], {
      EGRESS_FIREWALL_POLICY: policy, EGRESS_FIREWALL_SOURCES: `${ADDR.client}/32`, EGRESS_FIREWALL_INTERFACE: 'eth0',
      EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14', EGRESS_ROUTER_METRICS_ADDRESS: M,
    });
    expect((await tcp(A)).ok).toBe(true);
    expect((await tcp(B)).ok).toBe(false);
    const m = await metrics();
    expect(sample(m, 'egress_router_policy_decisions_total', { engine: 'firewall', rule: '0.1', action: 'deny' })).toBeGreaterThanOrEqual(1);
    expect(sample(m, 'egress_router_policy_decisions_total', { engine: 'firewall', rule: '0.2', action: 'allow' })).toBeGreaterThanOrEqual(1);
  });

  it('a changed policy is reloaded (B allowed, A denied); an invalid one is kept out, /readyz stays 200', async () => {
    writeFileSync(policy, policyYaml([deny(`${A}/32`), allow('0.0.0.0/0')]));
    await until(() => p.output().includes('"msg":"configuration reloaded"'));
    expect((await tcp(B)).ok).toBe(true);
    expect((await tcp(A)).ok).toBe(false);
    writeFileSync(policy, 'kind: EgressNetworkPolicy\nspec: [\n');
    await until(() => p.output().includes('configuration not reloaded'));
    expect((await tcp(B)).ok).toBe(true);
    const ready = await health(lab, 'node', M, '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body).config.firewall.lastReloadSuccessful).toBe(false);
    const m = await metrics();
    expect(sample(m, 'egress_router_config_reloads_total', { engine: 'firewall', result: 'success' })).toBe(1);
    expect(sample(m, 'egress_router_config_reloads_total', { engine: 'firewall', result: 'failure' })).toBe(1);
  });

  it('SIGTERM: exit 0, the rules stay', async () => {
    p.kill('SIGTERM');
    expect(await exited(p)).toEqual({ code: 0, signal: null });
    expect(p.output()).toContain('rules left in place');
    expect((await tcp(A)).ok).toBe(false);
    expect((await tcp(B)).ok).toBe(true);
  });
});
