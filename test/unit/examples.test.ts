/**
 * Examples that cannot rot. Every manifest of examples/kubernetes/ is parsed
 * with `yaml`, checked against the Kubernetes schema (kubernetes-models'
 * validators; EgressNetworkPolicy, an OpenShift kind they lack, by its
 * fields), and every container running this image gets the environment the
 * kubelet would give it (values, configMapKeyRef from the example's own
 * ConfigMap, ConfigMap volumes laid out as the kubelet does, `..data`
 * symlink and all) and must pass `egress-router check <part>`. The
 * bare-metal env files of examples/host/ get the same check. Commands the
 * build does not have yet (daemon, firewall) are skipped, with the reason,
 * only while `egress-router --help` does not list them.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { ReplicationController } from 'kubernetes-models/v1/ReplicationController';
import { Service } from 'kubernetes-models/v1/Service';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { BIN, ROOT, ensureBuilt } from './dist.js';

/** The image every example uses, and the Containerfile builds. */
export const IMAGE = 'egress-router:latest';
const K8S = join(ROOT, 'examples', 'kubernetes');
const HOST = join(ROOT, 'examples', 'host');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Part = 'router' | 'http-proxy' | 'dns-proxy' | 'firewall';

const MODELS: Record<string, new (o: Obj) => { validate(): void }> = {
  'v1/Pod': Pod, 'v1/Service': Service, 'v1/ConfigMap': ConfigMap, 'v1/Namespace': Namespace,
  'v1/ReplicationController': ReplicationController, 'apps/v1/Deployment': Deployment, 'apps/v1/DaemonSet': DaemonSet,
};

/** Parse a multi-document file; a YAML error is a failure naming the file. */
export function parseManifests(text: string, file: string): Obj[] {
  return parseAllDocuments(text).filter((d) => d.contents !== null).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS() as Obj;
  });
}

/** Schema problems of one object: [] when valid. */
export function structureErrors(o: Obj): string[] {
  const key = `${o.apiVersion}/${o.kind}`;
  if (o.kind === 'EgressNetworkPolicy') return egressPolicyErrors(o);
  const Model = MODELS[key];
  if (!Model) return [`no schema for ${key}: add its model to the examples test`];
  try {
    new Model(o).validate();
    return [];
  } catch (e) {
    return [`${key} ${o.metadata?.name}: ${(e as Error).message}`];
  }
}

/** EgressNetworkPolicy (OpenShift; no model in kubernetes-models): the fields the documentation defines. */
function egressPolicyErrors(o: Obj): string[] {
  const errs: string[] = [];
  if (!['v1', 'network.openshift.io/v1'].includes(o.apiVersion)) errs.push(`apiVersion ${o.apiVersion}`);
  if (typeof o.metadata?.name !== 'string') errs.push('metadata.name missing');
  const rules = o.spec?.egress;
  if (!Array.isArray(rules)) return [...errs, 'spec.egress must be a list'];
  rules.forEach((r: Obj, i: number) => {
    if (r.type !== 'Allow' && r.type !== 'Deny') errs.push(`spec.egress[${i}].type ${r.type}`);
    const to = Object.keys(r.to ?? {});
    if (to.length !== 1 || !['cidrSelector', 'dnsName'].includes(to[0]!)) errs.push(`spec.egress[${i}].to ${JSON.stringify(r.to)}`);
  });
  return errs;
}

export interface ContainerCheck {
  file: string;
  container: string;
  /** The egress-router command the container runs ('run' for the entrypoint). */
  command: string;
  parts: Part[];
  env: Record<string, string>;
}

function podSpecs(o: Obj): Obj[] {
  if (o.kind === 'Pod') return [o.spec];
  if (['ReplicationController', 'Deployment', 'DaemonSet'].includes(o.kind)) return [o.spec?.template?.spec];
  return [];
}

/**
 * Every container running IMAGE in `docs` (one file's objects), with the
 * environment the kubelet would give it. ConfigMap volumes are written under
 * `scratch` as the kubelet lays them out and *_FILE paths pointed there.
 */
export function containerChecks(docs: Obj[], file: string, scratch: string): ContainerCheck[] {
  const configMaps = new Map(docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name as string, d]));
  const cm = (name: string): Obj => configMaps.get(name) ?? (() => { throw new Error(`${file}: ConfigMap ${name} is not in the example`); })();
  const out: ContainerCheck[] = [];
  for (const spec of docs.flatMap(podSpecs)) {
    for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as Obj[]) {
      if (c.image !== IMAGE) {
        if (String(c.image).includes('egress-router')) throw new Error(`${file}: container ${c.name} uses ${c.image}, not ${IMAGE}`);
        continue;
      }
      if (c.command && !(c.command.length === 1 && c.command[0] === 'egress-router')) {
        throw new Error(`${file}: container ${c.name} overrides the entrypoint (${c.command.join(' ')}); use args`);
      }
      const env: Record<string, string> = {};
      for (const e of (c.env ?? []) as Obj[]) {
        if (e.value !== undefined) env[e.name] = String(e.value);
        else if (e.valueFrom?.configMapKeyRef) {
          const ref = e.valueFrom.configMapKeyRef;
          const v = cm(ref.name).data?.[ref.key];
          if (v === undefined) throw new Error(`${file}: ConfigMap ${ref.name} has no key ${ref.key}`);
          env[e.name] = v;
        } else throw new Error(`${file}: env ${e.name} of ${c.name}: only value and configMapKeyRef are resolved here`);
      }
      for (const m of (c.volumeMounts ?? []) as Obj[]) {
        const vol = (spec.volumes ?? []).find((v: Obj) => v.name === m.name);
        if (!vol?.configMap) continue;
        const dir = kubeletConfigMap(cm(vol.configMap.name), vol.configMap.items, join(scratch, `${basename(file)}-${c.name}-${m.name}`));
        for (const [k, v] of Object.entries(env)) {
          if (v === m.mountPath || v.startsWith(m.mountPath.replace(/\/$/, '') + '/')) env[k] = dir + v.slice(m.mountPath.replace(/\/$/, '').length);
        }
      }
      const command = c.args?.[0] ?? 'run';
      out.push({ file, container: c.name, command, parts: partsOf(command, env, `${file} ${c.name}`), env });
    }
  }
  return out;
}

/** What `check` must accept for a container running `command` with `env`. */
export function partsOf(command: string, env: Record<string, string>, where: string): Part[] {
  switch (command) {
    case 'run': return ['router'];
    case 'http-proxy': case 'dns-proxy': case 'firewall': return [command];
    case 'daemon': {
      // One process: the network set-up (router) and the engine of the mode.
      const mode = env.EGRESS_ROUTER_MODE ?? 'legacy';
      return mode === 'http-proxy' || mode === 'dns-proxy' ? ['router', mode] : ['router'];
    }
    default: throw new Error(`${where}: unknown command '${command}'`);
  }
}

/** A ConfigMap volume as the kubelet writes it: ..<ts>/key, ..data -> ..<ts>, key -> ..data/key. */
export function kubeletConfigMap(map: Obj, items: Obj[] | undefined, dir: string): string {
  const stamp = '..2026_12_06_10_00_00.000000001';
  mkdirSync(join(dir, stamp), { recursive: true });
  const entries: [string, string][] = items
    ? items.map((i) => [i.path, map.data?.[i.key] ?? (() => { throw new Error(`ConfigMap ${map.metadata.name} has no key ${i.key}`); })()])
    : Object.entries(map.data ?? {});
  for (const [path, text] of entries) {
    mkdirSync(dirname(join(dir, stamp, path)), { recursive: true });
    writeFileSync(join(dir, stamp, path), text);
  }
  symlinkSync(stamp, join(dir, '..data'));
  for (const top of new Set(entries.map(([p]) => p.split('/')[0]!))) symlinkSync(join('..data', top), join(dir, top));
  return dir;
}

/** A systemd EnvironmentFile, with /etc/egress-router/<name> pointed at the example next to it. */
export function hostEnv(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!.replace(/^\/etc\/egress-router\//, dirname(file) + '/');
  }
  return env;
}

export function check(part: Part, env: Record<string, string>): { code: number; out: string } {
  const r = spawnSync(process.execPath, [BIN, 'check', part], { env: { PATH: process.env.PATH, ...env }, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status ?? 1, out: (r.stdout + r.stderr).trim() };
}

/** Commands the build has (`egress-router --help`). */
function commands(): Set<string> {
  const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 20_000 });
  return new Set([...r.stdout.matchAll(/^ {2}([a-z-]+)\b/gm)].map((m) => m[1]!));
}

const manifests = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f)).sort();
const hostEnvs = [...readdirSync(HOST).filter((f) => f.endsWith('.env')).map((f) => join(HOST, f)),
  ...readdirSync(join(HOST, 'failover')).filter((f) => f.endsWith('.env')).map((f) => join(HOST, 'failover', f))];
const scratch = mkdtempSync(join(tmpdir(), 'erl-examples-'));
let have = new Set<string>();

beforeAll(async () => {
  await ensureBuilt();
  have = commands();
}, 120_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('examples/kubernetes', () => {
  it('has every documented scenario', () => {
    const kinds = manifests.flatMap((f) => parseManifests(readFileSync(join(K8S, f), 'utf8'), f).map((o) => o.kind));
    for (const k of ['Pod', 'Service', 'ConfigMap', 'ReplicationController', 'Deployment', 'DaemonSet', 'EgressNetworkPolicy']) expect(kinds).toContain(k);
  });

  for (const f of manifests) {
    describe(f, () => {
      const docs = parseManifests(readFileSync(join(K8S, f), 'utf8'), f);
      it('matches the Kubernetes schema of its kinds', () => {
        expect(docs.length).toBeGreaterThan(0);
        expect(docs.flatMap(structureErrors)).toEqual([]);
      });
      const checks = containerChecks(docs, f, scratch);
      for (const c of checks) {
        it(`${c.container}: egress-router ${c.command} is a command of this build`, (ctx) => {
          if (c.command !== 'run' && !have.has(c.command)) ctx.skip(`egress-router ${c.command} is not in this build yet (egress-router --help does not list it)`);
          expect(c.command === 'run' || have.has(c.command)).toBe(true);
        });
        it(`${c.container}: check ${c.parts.join(' + ')} accepts its environment`, (ctx) => {
          // `check firewall` comes with the firewall command.
          if (c.parts.includes('firewall') && !have.has('firewall')) ctx.skip('egress-router firewall is not in this build yet (egress-router --help does not list it)');
          for (const part of c.parts) {
            const r = check(part, c.env);
            expect(r.out && r.code, `check ${part}: ${r.out}`).toBe(0);
          }
        });
      }
    });
  }

  it('egress-network-policy.yaml: check firewall accepts the policy', (ctx) => {
    if (!have.has('firewall')) ctx.skip('egress-router firewall is not in this build yet (egress-router --help does not list it)');
    const r = check('firewall', { EGRESS_FIREWALL_POLICY: join(K8S, 'egress-network-policy.yaml'), EGRESS_FIREWALL_SOURCES: '10.128.0.0/14' });
    expect(r.out && r.code, r.out).toBe(0);
  });

  it('the firewall DaemonSet runs on the node: host network, privileged', () => {
    const ds = parseManifests(readFileSync(join(K8S, 'firewall-daemonset.yaml'), 'utf8'), 'firewall-daemonset.yaml').find((o) => o.kind === 'DaemonSet')!;
    expect(ds.spec.template.spec.hostNetwork).toBe(true);
    expect(ds.spec.template.spec.containers[0].securityContext.privileged).toBe(true);
  });

  it('failover controllers keep exactly one pod, and the Deployment never runs two at once', () => {
    const rc = parseManifests(readFileSync(join(K8S, 'failover-replicationcontroller.yaml'), 'utf8'), 'rc')[0]!;
    const dep = parseManifests(readFileSync(join(K8S, 'failover-deployment.yaml'), 'utf8'), 'dep')[0]!;
    expect(rc.spec.replicas).toBe(1);
    expect(dep.spec).toMatchObject({ replicas: 1, strategy: { type: 'Recreate' } });
  });
});

describe('examples/host', () => {
  for (const file of hostEnvs) {
    const env = hostEnv(file);
    const mode = env.EGRESS_ROUTER_MODE;
    const parts: Part[] = env.EGRESS_FIREWALL_POLICY ? ['firewall'] : mode === 'http-proxy' || mode === 'dns-proxy' ? ['router', mode] : ['router'];
    it(`${file.slice(HOST.length + 1)}: check ${parts.join(' + ')} accepts it`, (ctx) => {
      if (parts.includes('firewall') && !have.has('firewall')) ctx.skip('egress-router firewall is not in this build yet (egress-router --help does not list it)');
      for (const part of parts) {
        const r = check(part, env);
        expect(r.out && r.code, `check ${part}: ${r.out}`).toBe(0);
      }
    });
  }
});

describe('the examples test itself', () => {
  const f = 'redirect-configmap.yaml';
  const docs = () => parseManifests(readFileSync(join(K8S, f), 'utf8'), f);
  it('goes red when an example breaks: a bad destination line in the ConfigMap', () => {
    const broken = docs();
    const map = broken.find((o) => o.kind === 'ConfigMap')!;
    map.data.destination = '8080 tcp not-an-ip\n' + map.data.destination;
    const [c] = containerChecks(broken, f, join(scratch, 'broken'));
    const r = check('router', c!.env);
    expect(r.code).toBe(1);
    expect(r.out).toBe("EGRESS_DESTINATION value '8080 tcp not-an-ip' is invalid");
  });
  it('goes red when a ConfigMap key the pod names is missing', () => {
    const broken = docs();
    delete broken.find((o) => o.kind === 'ConfigMap')!.data.destination;
    expect(() => containerChecks(broken, f, join(scratch, 'broken2'))).toThrow('ConfigMap egress-routes has no key destination');
  });
  it('goes red on a structure error (a container without a name, a port as text)', () => {
    const broken = docs();
    const pod = broken.find((o) => o.kind === 'Pod')!;
    delete pod.spec.initContainers[0].name;
    expect(structureErrors(pod).join()).toMatch(/name/);
    const svc = parseManifests(readFileSync(join(K8S, 'redirect-pod.yaml'), 'utf8'), 'x').find((o) => o.kind === 'Service')!;
    svc.spec.ports[0].port = 'eighty';
    expect(structureErrors(svc).join()).toMatch(/port/);
  });
  it('a mounted ConfigMap is laid out as the kubelet does: key -> ..data/key -> ..<timestamp>/key', () => {
    const dir = kubeletConfigMap({ metadata: { name: 'm' }, data: { a: 'x' } }, undefined, join(scratch, 'layout'));
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('x');
    expect(readdirSync(dir).sort()).toEqual(['..2026_12_06_10_00_00.000000001', '..data', 'a']);
  });
});
