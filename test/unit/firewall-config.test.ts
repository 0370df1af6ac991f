/**
 * EgressNetworkPolicy input (src/config/firewall-policy.ts, firewall.ts):
 * the forms users write, and every validation message, verbatim (the
 * OpenShift validator's texts where OpenShift has one).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { firewallConfig, readPolicyFiles, type PolicyFile } from '../../src/config/firewall.js';
import { parsePolicyText } from '../../src/config/firewall-policy.js';
import { errorOf } from './config-error.js';

const LIMITS = { maxRules: 50, dnsView: false };
const policy = (egress: unknown[], extra = '') => JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'default', namespace: 'p1' }, spec: { egress } }) + extra;
const parse = (text: string, limits = LIMITS) => parsePolicyText('policy.yaml', text, limits);
const rule = (type: string, to: Record<string, string>) => ({ type, to });

const DOC_YAML = `kind: EgressNetworkPolicy
apiVersion: network.openshift.io/v1
metadata:
  name: default
  namespace: project1
spec:
  egress:
  - type: Allow
    to:
      cidrSelector: 1.2.3.0/24
  - type: Allow
    to:
      dnsName: www.foo.com
  - type: Deny
    to:
      cidrSelector: 0.0.0.0/0
`;

describe('EgressNetworkPolicy forms', () => {
  it('the documentation example in YAML', () => {
    const [p] = parse(DOC_YAML);
    expect(p).toEqual({
      file: 'policy.yaml', name: 'default', namespace: 'project1', annotations: {},
      rules: [
        { n: 1, type: 'Allow', to: { kind: 'cidr', cidr: { address: '1.2.3.0', family: 4, prefix: 24 }, text: '1.2.3.0/24' } },
        { n: 2, type: 'Allow', to: { kind: 'dns', name: 'www.foo.com', wildcard: false } },
        { n: 3, type: 'Deny', to: { kind: 'cidr', cidr: { address: '0.0.0.0', family: 4, prefix: 0 }, text: '0.0.0.0/0' } },
      ],
    });
  });
  it('JSON, kind List, multi-document YAML, empty documents, IPv6', () => {
    expect(parse(policy([rule('Deny', { cidrSelector: '2001:db8::/32' })]))[0]!.rules[0]!.to).toEqual(
      { kind: 'cidr', cidr: { address: '2001:db8::', family: 6, prefix: 32 }, text: '2001:db8::/32' });
    const list = JSON.stringify({ kind: 'List', apiVersion: 'v1', items: [JSON.parse(policy([])), { ...JSON.parse(policy([])), metadata: { name: 'b' } }] });
    expect(parse(list).map((p) => p.name)).toEqual(['default', 'b']);
    expect(parse(`---\n${DOC_YAML}---\n---\n${DOC_YAML.replace('name: default', 'name: second')}`).map((p) => p.name)).toEqual(['default', 'second']);
    expect(parse(policy([]))[0]!.namespace).toBe('p1');
    // YAML flow style starts like JSON but is not: the YAML parser reads it.
    expect(parse('{kind: EgressNetworkPolicy, apiVersion: v1, metadata: {name: flow}}')[0]!.name).toBe('flow');
  });
  it('a policy without a namespace is in "default"', () => {
    expect(parse(JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'x' } }))[0]!.namespace).toBe('default');
  });
  it('wildcard names only with the DNS view', () => {
    const text = policy([rule('Allow', { dnsName: '*.example.com' })]);
    expect(errorOf(() => parse(text))).toBe('wildcard dns name is not supported as rule destination, *.example.com');
    expect(parse(text, { maxRules: 50, dnsView: true })[0]!.rules[0]!.to).toEqual({ kind: 'dns', name: 'example.com', wildcard: true });
  });
});

describe('validation messages (OpenShift validator texts)', () => {
  it.each([
    [[rule('Allow', { cidrSelector: '1.2.3.0/24' }), rule('Bob', { cidrSelector: '1.2.3.0/24' })], 'spec.egress[1].type: Invalid value: "Bob": invalid policy type'],
    [[rule('Allow', {})], 'spec.egress[0].to: Invalid value: "": must specify cidrSelector or dnsName'],
    [[rule('Allow', { cidrSelector: '1.2.3.0/24', dnsName: 'www.foo.com' })], 'spec.egress[0].to: Invalid value: "1.2.3.0/24": either specify cidrSelector or dnsName but not both'],
    [[rule('Allow', { cidrSelector: '1.2.3.0/24' }), rule('Allow', { dnsName: 'a.com' }), rule('Deny', { cidrSelector: '1.2.3.4/24' })],
      'spec.egress[2].to.cidrSelector: Invalid value: "1.2.3.4/24": CIDR network specification "1.2.3.4/24" is not in canonical form (should be 1.2.3.0/24 or 1.2.3.4/32?)'],
    [[rule('Deny', { cidrSelector: '2001:db8::1/32' })],
      'spec.egress[0].to.cidrSelector: Invalid value: "2001:db8::1/32": CIDR network specification "2001:db8::1/32" is not in canonical form (should be 2001:db8::/32 or 2001:db8::1/128?)'],
    [[rule('Allow', { cidrSelector: '1.2.3./32' })], 'spec.egress[0].to.cidrSelector: Invalid value: "1.2.3./32": invalid CIDR address: 1.2.3./32'],
    [[rule('Allow', { cidrSelector: '1.2.3.4' })], 'spec.egress[0].to.cidrSelector: Invalid value: "1.2.3.4": invalid CIDR address: 1.2.3.4'],
    [[rule('Allow', { dnsName: 'a.com' }), rule('Allow', { dnsName: 'www.Example$.com' })], 'spec.egress[1].to.dnsName: Invalid value: "www.Example$.com": must conform to DNS 952 subdomain conventions'],
    [[rule('Allow', { dnsName: 'www.example.com.' })], 'spec.egress[0].to.dnsName: Invalid value: "www.example.com.": must conform to DNS 952 subdomain conventions'],
    [[rule('Allow', { dnsName: 'WWW.example.com' })], 'spec.egress[0].to.dnsName: Invalid value: "WWW.example.com": must conform to DNS 952 subdomain conventions'],
    [[rule('Allow', { dnsName: `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(60)}` })],
      `spec.egress[0].to.dnsName: Invalid value: "${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(60)}": must conform to DNS 952 subdomain conventions`],
    [Array.from({ length: 51 }, () => rule('Allow', { cidrSelector: '1.2.3.0/24' })), 'spec.egress: Invalid value: "": too many egress rules (max 50)'],
  ])('rule set %#', (egress, message) => {
    expect(errorOf(() => parse(policy(egress)))).toBe(message);
  });
  it('EGRESS_FIREWALL_MAX_RULES raises the limit, and the message names the limit in force', () => {
    const egress = Array.from({ length: 60 }, () => rule('Allow', { cidrSelector: '1.2.3.0/24' }));
    expect(parse(policy(egress), { maxRules: 1000, dnsView: false })[0]!.rules).toHaveLength(60);
    expect(errorOf(() => parse(policy(egress), { maxRules: 59, dnsView: false }))).toBe('spec.egress: Invalid value: "": too many egress rules (max 59)');
  });
  it.each([
    ['kind: ConfigMap\napiVersion: v1\n', 'policy.yaml: kind "ConfigMap" is not EgressNetworkPolicy (or a List of them)'],
    ['kind: EgressNetworkPolicy\napiVersion: v2\n', 'policy.yaml: apiVersion "v2" is not v1 or network.openshift.io/v1'],
    ['kind: EgressNetworkPolicy\napiVersion: v1\nmetadata: {name: a}\nspec: {egres: []}\n', 'policy.yaml: EgressNetworkPolicy "a": unknown field "spec.egres"'],
    ['kind: EgressNetworkPolicy\napiVersion: v1\nmetadata: {name: a}\nspec: {egress: [{type: Allow, to: {cidr: 1.2.3.0/24}}]}\n', 'policy.yaml: EgressNetworkPolicy "a": unknown field "spec.egress[0].to.cidr"'],
    ['kind: EgressNetworkPolicy\napiVersion: v1\nmetadata: {name: a}\nspec: {egress: [{type: Allow, port: 80}]}\n', 'policy.yaml: EgressNetworkPolicy "a": unknown field "spec.egress[0].port"'],
    ['kind: EgressNetworkPolicy\napiVersion: v1\nmetadata: {}\n', 'policy.yaml: metadata.name: Required value: name or generateName is required'],
    ['kind: EgressNetworkPolicy\napiVersion: v1\nmetadata: {name: a}\nspec: {egress: [{type: Allow, to: {cidrSelector: 5}}]}\n', 'policy.yaml: EgressNetworkPolicy "a": spec.egress[0].to.cidrSelector must be a string, not 5'],
    ['kind: [\n', 'policy.yaml: cannot parse: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['- a\n- b\n', 'policy.yaml: the document is not an object'],
    ['{"kind": "EgressNetworkPolicy",\n', 'policy.yaml: cannot parse: Flow map must end with a }'],
  ])('%#: one line naming the file: %s', (text, message) => {
    expect(errorOf(() => parse(text))).toBe(message);
  });
});

describe('firewallConfig', () => {
  const files = (...texts: string[]) => (): PolicyFile[] => texts.map((text, i) => ({ file: `f${i}.yaml`, text }));
  const ENV = { EGRESS_FIREWALL_POLICY: '/cm', EGRESS_FIREWALL_SOURCES: '10.128.0.20,fd00:128::/64', EGRESS_FIREWALL_INTERFACE: 'eth0', EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14, 172.30.0.0/16' };
  it('settings, defaults, sources from the variable or the annotation', () => {
    const annotated = JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'b', namespace: 'p2', annotations: { 'egress-router.io/sources': '10.129.0.0/24' } }, spec: { egress: [rule('Deny', { cidrSelector: '0.0.0.0/0' })] } });
    const c = firewallConfig(ENV, files(DOC_YAML, annotated));
    expect(c.policies.map((p) => [p.name, p.sources.map((s) => `${s.address}/${s.prefix}`), p.ipv6])).toEqual([
      ['default', ['10.128.0.20/32', 'fd00:128::/64'], true], ['b', ['10.129.0.0/24'], false]]);
    expect(c).toMatchObject({ interface: 'eth0', maxRules: 50, table: 'egress_router_firewall', linear: false, dnsView: false, dnsGraceS: 30, dnsTimeoutMs: 250, conflicts: [], read: 2 });
    expect(c.clusterCidrs).toHaveLength(2);
  });
  it('two non-empty policies in one namespace: its traffic dropped, with openshift-sdn\'s line; an empty one does not count', () => {
    const empty = JSON.stringify({ kind: 'EgressNetworkPolicy', apiVersion: 'v1', metadata: { name: 'e', namespace: 'project1' }, spec: { egress: [] } });
    expect(firewallConfig(ENV, files(DOC_YAML, empty)).conflicts).toEqual([]);
    const c = firewallConfig(ENV, files(DOC_YAML, DOC_YAML.replace('name: default', 'name: other')));
    expect(c.policies).toEqual([]);
    expect(c.conflicts.map((x) => x.message)).toEqual(['multiple EgressNetworkPolicies in same network namespace (project1) is not allowed; dropping all traffic']);
  });
  it.each([
    [{ EGRESS_FIREWALL_POLICY: '' }, 'EGRESS_FIREWALL_POLICY unspecified'],
    [{ EGRESS_FIREWALL_SOURCES: '10.0.0.0/33' }, "EGRESS_FIREWALL_SOURCES '10.0.0.0/33' is not an IP address or CIDR"],
    [{ EGRESS_FIREWALL_SOURCES: '' }, 'EgressNetworkPolicy "default" applies to no sources: set EGRESS_FIREWALL_SOURCES or its egress-router.io/sources annotation'],
    [{ EGRESS_FIREWALL_CLUSTER_CIDRS: 'pods' }, "EGRESS_FIREWALL_CLUSTER_CIDRS 'pods' is not an IP address or CIDR"],
    [{ EGRESS_FIREWALL_MAX_RULES: '0' }, "EGRESS_FIREWALL_MAX_RULES '0' is invalid, must be a number from 1 to 100000"],
    [{ EGRESS_FIREWALL_INTERFACE: 'a/b' }, "EGRESS_FIREWALL_INTERFACE 'a/b' is not an interface name"],
    [{ EGRESS_FIREWALL_TABLE: 'x y' }, "EGRESS_FIREWALL_TABLE 'x y' is invalid, must be letters, digits and _"],
    [{ EGRESS_FIREWALL_DNS_VIEW: 'yes' }, "EGRESS_FIREWALL_DNS_VIEW 'yes' is invalid, must be 0 or 1"],
  ])('%j: %s', (env, message) => {
    expect(errorOf(() => firewallConfig({ ...ENV, ...env }, files(DOC_YAML)))).toBe(message);
  });
});

describe('readPolicyFiles', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fw-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('a ConfigMap folder: files through ..data, dot-entries skipped, sorted', () => {
    mkdirSync(join(dir, '..2026_12_06'));
    writeFileSync(join(dir, '..2026_12_06', 'b.yaml'), 'B');
    writeFileSync(join(dir, '..2026_12_06', 'a.json'), 'A');
    symlinkSync('..2026_12_06', join(dir, '..data'));
    symlinkSync('..data/b.yaml', join(dir, 'b.yaml'));
    symlinkSync('..data/a.json', join(dir, 'a.json'));
    expect(readPolicyFiles(dir)).toEqual([{ file: join(dir, 'a.json'), text: 'A' }, { file: join(dir, 'b.yaml'), text: 'B' }]);
    expect(readPolicyFiles(join(dir, 'a.json'))).toEqual([{ file: join(dir, 'a.json'), text: 'A' }]);
  });
  it('a missing path is one line', () => {
    expect(errorOf(() => readPolicyFiles(join(dir, 'nope')))).toBe(`EGRESS_FIREWALL_POLICY '${join(dir, 'nope')}' cannot be read: ENOENT`);
  });
});
