/**
 * EgressNetworkPolicy objects, as users write them for OpenShift: parsing
 * (JSON or YAML, multi-document, kind List) and validation with the
 * OpenShift validator's own messages (pkg/network/apis/network/validation),
 * first error only, so runbooks written for OpenShift keep matching.
 */
import { parseAllDocuments } from 'yaml';
import { die } from './errors.js';
import { canonicalIp, networkOf, parseCidr, type Cidr } from './ip.js';

export type FwTarget =
  | { readonly kind: 'cidr'; readonly cidr: Cidr; readonly text: string }
  /** Lower-case name; `wildcard` for `*.domain` (only with the DNS view). */
  | { readonly kind: 'dns'; readonly name: string; readonly wildcard: boolean };

export interface FwRule {
  /** 1-based position in spec.egress: what logs, counters and explain call "rule N". */
  readonly n: number;
  readonly type: 'Allow' | 'Deny';
  readonly to: FwTarget;
}

export interface RawPolicy {
  readonly file: string;
  readonly name: string;
  readonly namespace: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly rules: readonly FwRule[];
}

export interface PolicyLimits {
  readonly maxRules: number;
  /** The DNS view (issue 11) is on: `*.domain` names are accepted. */
  readonly dnsView: boolean;
}

export const API_VERSIONS = ['v1', 'network.openshift.io/v1'];
const TOP = ['kind', 'apiVersion', 'metadata', 'spec', 'status'];
// What `oc get -o yaml` prints in metadata: accepted so a dump can be mounted as is.
const META = ['name', 'namespace', 'annotations', 'labels', 'uid', 'resourceVersion', 'creationTimestamp', 'generation',
  'selfLink', 'managedFields', 'generateName', 'ownerReferences', 'finalizers', 'deletionTimestamp', 'deletionGracePeriodSeconds'];
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Every EgressNetworkPolicy in one file's text, in order. */
export function parsePolicyText(file: string, text: string, limits: PolicyLimits): RawPolicy[] {
  const out: RawPolicy[] = [];
  for (const value of documents(file, text)) {
    if (value === null || value === undefined) continue;
    const o = object(value, file, 'the document');
    if (o.kind === 'List') {
      if (!Array.isArray(o.items)) die(`${file}: kind List without an items array`);
      o.items.forEach((item: unknown, i: number) => out.push(policyOf(file, object(item, file, `items[${i}]`), limits)));
    } else out.push(policyOf(file, o, limits));
  }
  return out;
}

/**
 * JSON through JSON.parse (a 1000-rule policy parses ~50x faster than through
 * the YAML parser); everything else, and text JSON.parse refuses (YAML flow
 * style also starts with `{`), through the YAML parser.
 */
function documents(file: string, text: string): unknown[] {
  if (/^\s*[[{]/.test(text)) {
    try { return [JSON.parse(text)]; } catch { /* not JSON: YAML decides */ }
  }
  const docs = parseAllDocuments(text, { prettyErrors: false });
  return (Array.isArray(docs) ? docs : [docs]).map((doc) => {
    const err = doc.errors[0];
    if (err) die(`${file}: cannot parse: ${err.message.split('\n')[0]}`);
    return doc.toJS() as unknown;
  });
}

function object(v: unknown, file: string, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) die(`${file}: ${what} is not an object`);
  return v as Record<string, unknown>;
}

function unknownFields(o: Record<string, unknown>, known: readonly string[], at: string, where: string): void {
  const extra = Object.keys(o).find((k) => !known.includes(k));
  if (extra !== undefined) die(`${where}: unknown field "${at}${extra}"`);
}

function str(v: unknown, where: string, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') die(`${where}: ${field} must be a string, not ${JSON.stringify(v)}`);
  return v;
}

function policyOf(file: string, o: Record<string, unknown>, limits: PolicyLimits): RawPolicy {
  if (o.kind !== 'EgressNetworkPolicy') die(`${file}: kind ${JSON.stringify(o.kind ?? '')} is not EgressNetworkPolicy (or a List of them)`);
  if (!API_VERSIONS.includes(o.apiVersion as string)) die(`${file}: apiVersion ${JSON.stringify(o.apiVersion ?? '')} is not v1 or network.openshift.io/v1`);
  const meta = object(o.metadata ?? {}, file, 'metadata');
  const name = str(meta.name, file, 'metadata.name');
  const where = `${file}: EgressNetworkPolicy ${JSON.stringify(name)}`;
  unknownFields(o, TOP, '', where);
  unknownFields(meta, META, 'metadata.', where);
  if (name === '') die(`${file}: metadata.name: Required value: name or generateName is required`);
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(object(meta.annotations ?? {}, file, 'metadata.annotations'))) annotations[k] = str(v, where, `metadata.annotations.${k}`);
  const spec = object(o.spec ?? {}, file, 'spec');
  unknownFields(spec, ['egress'], 'spec.', where);
  const egress = spec.egress ?? [];
  if (!Array.isArray(egress)) die(`${where}: spec.egress must be a list`);
  const rules = egress.map((r: unknown, i: number) => ruleOf(object(r, file, `spec.egress[${i}]`), i, where, limits));
  // After the rules, as the validator appends it; the limit in force is named.
  if (rules.length > limits.maxRules) die(`spec.egress: Invalid value: "": too many egress rules (max ${limits.maxRules})`);
  return { file, name, namespace: str(meta.namespace, where, 'metadata.namespace') || 'default', annotations, rules };
}

function ruleOf(r: Record<string, unknown>, i: number, where: string, limits: PolicyLimits): FwRule {
  const at = `spec.egress[${i}]`;
  unknownFields(r, ['type', 'to'], `${at}.`, where);
  const type = str(r.type, where, `${at}.type`);
  if (type !== 'Allow' && type !== 'Deny') die(`${at}.type: Invalid value: ${JSON.stringify(type)}: invalid policy type`);
  const to = r.to === undefined || r.to === null ? {} : object(r.to, where, `${at}.to`);
  unknownFields(to, ['cidrSelector', 'dnsName'], `${at}.to.`, where);
  const cidr = str(to.cidrSelector, where, `${at}.to.cidrSelector`);
  const dns = str(to.dnsName, where, `${at}.to.dnsName`);
  if (cidr === '' && dns === '') die(`${at}.to: Invalid value: "": must specify cidrSelector or dnsName`);
  if (cidr !== '' && dns !== '') die(`${at}.to: Invalid value: ${JSON.stringify(cidr)}: either specify cidrSelector or dnsName but not both`);
  if (cidr !== '') return { n: i + 1, type, to: { kind: 'cidr', cidr: parseCidrSelector(cidr, `${at}.to.cidrSelector`), text: cidr } };
  return { n: i + 1, type, to: parseDnsName(dns, `${at}.to.dnsName`, limits.dnsView) };
}

/** Go's net.ParseCIDR plus OpenShift's canonical-form check, with their messages. */
export function parseCidrSelector(s: string, field: string): Cidr {
  const c = s.includes('/') ? parseCidr(s) : undefined;
  if (!c) die(`${field}: Invalid value: ${JSON.stringify(s)}: invalid CIDR address: ${s}`);
  const net = networkOf(c);
  const ip = canonicalIp(c.address, c.family);
  if (net !== ip) {
    const full = c.family === 4 ? 32 : 128;
    die(`${field}: Invalid value: ${JSON.stringify(s)}: CIDR network specification ${JSON.stringify(s)} is not in canonical form (should be ${net}/${c.prefix} or ${ip}/${full}?)`);
  }
  return { address: net, family: c.family, prefix: c.prefix };
}

export function parseDnsName(s: string, field: string, dnsView: boolean): FwTarget {
  if (s.startsWith('*.') && isSubdomain(s.slice(2))) {
    if (!dnsView) die(`wildcard dns name is not supported as rule destination, ${s}`);
    return { kind: 'dns', name: s.slice(2), wildcard: true };
  }
  if (!isSubdomain(s)) die(`${field}: Invalid value: ${JSON.stringify(s)}: must conform to DNS 952 subdomain conventions`);
  return { kind: 'dns', name: s, wildcard: false };
}

/** Kubernetes' IsDNS1123Subdomain: lower case, at most 253 characters, no trailing dot. */
export function isSubdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

export function targetText(t: FwTarget): string {
  return t.kind === 'cidr' ? `cidrSelector ${t.text}` : `dnsName ${t.wildcard ? '*.' : ''}${t.name}`;
}
