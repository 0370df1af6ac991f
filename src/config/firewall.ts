/**
 * The egress firewall's settings: EGRESS_FIREWALL_* to a typed config, pure
 * but for one small reader of the policy file or folder (injected in tests).
 * The CLI only merges its flags into the environment and calls firewallConfig.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { die } from './errors.js';
import { networkOf, parseCidr, type Cidr } from './ip.js';
import { parsePolicyText, type RawPolicy } from './firewall-policy.js';

export const FIREWALL_VARS: Record<string, string> = {
  EGRESS_FIREWALL_POLICY: 'file or folder (a mounted ConfigMap) of EgressNetworkPolicy objects: JSON or YAML, kind List, multi-document',
  EGRESS_FIREWALL_SOURCES: 'comma-separated CIDRs of the pods a policy applies to (default for every policy; per policy: annotation egress-router.io/sources)',
  EGRESS_FIREWALL_INTERFACE: "the node's external interface: only traffic leaving through it is filtered (default: any)",
  EGRESS_FIREWALL_CLUSTER_CIDRS: 'comma-separated destination CIDRs never filtered (pod and service networks)',
  EGRESS_FIREWALL_MAX_RULES: 'rules allowed per policy (default 50, the OpenShift 3.x limit; OpenShift 4 allows 1000)',
  EGRESS_FIREWALL_TABLE: 'nftables table (family inet), default egress_router_firewall',
  EGRESS_FIREWALL_LINEAR: "'1': one rule per policy rule in a linear chain instead of verdict maps (for comparison)",
  EGRESS_FIREWALL_DNS_VIEW: "'1' enables the DNS view (issue 11): *.domain names accepted",
  EGRESS_FIREWALL_DNS_GRACE: "seconds added to a learned address's TTL (DNS view, default 30)",
  EGRESS_FIREWALL_DNS_TIMEOUT: 'ms bound on the set update before SERVFAIL (DNS view, default 250)',
  EGRESS_FIREWALL_DNS_PORT: "the DNS view's forwarder port for queries to any server (default 15353); the node's nameservers get the next ports, one each",
  EGRESS_ROUTER_DEBUG: 'set to log the rendered ruleset',
};

export const SOURCES_ANNOTATION = 'egress-router.io/sources';
export const DEFAULT_TABLE = 'egress_router_firewall';

export interface FwPolicy extends RawPolicy {
  readonly sources: readonly Cidr[];
  /** Some sources are IPv6: names are resolved for AAAA too. */
  readonly ipv6: boolean;
}

/** A namespace with two non-empty policies: all its external traffic is dropped, as openshift-sdn does. */
export interface Conflict {
  readonly namespace: string;
  readonly sources: readonly Cidr[];
  readonly message: string;
}

export interface FirewallConfig {
  readonly path: string;
  /** Non-empty policies of namespaces without a conflict, in file order. */
  readonly policies: readonly FwPolicy[];
  readonly conflicts: readonly Conflict[];
  /** Every policy read, empty ones included (for summaries). */
  readonly read: number;
  readonly interface: string | undefined;
  readonly clusterCidrs: readonly Cidr[];
  readonly maxRules: number;
  readonly table: string;
  readonly linear: boolean;
  readonly dnsView: boolean;
  readonly dnsGraceS: number;
  readonly dnsTimeoutMs: number;
  /** The view's catch-all forwarder port; per-nameserver forwarders take the ports after it. */
  readonly dnsPort: number;
  /** Hash of the files read: an unchanged policy is not applied again. */
  readonly digest: string;
}

export interface PolicyFile { readonly file: string; readonly text: string }
export type PolicyReader = (path: string) => PolicyFile[];

type Env = Readonly<Record<string, string | undefined>>;

/**
 * A file, or every regular file of a folder. A mounted ConfigMap keeps its
 * files behind `..data` (a symlink swapped on update): read through it, and
 * skip the dot-entries (`..data`, `..2024_…`) themselves.
 */
export const readPolicyFiles: PolicyReader = (path) => {
  const fail = (e: unknown): never => die(`EGRESS_FIREWALL_POLICY '${path}' cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  try {
    if (!statSync(path).isDirectory()) return [{ file: path, text: readFileSync(path, 'utf8') }];
    const names = readdirSync(path).filter((n) => !n.startsWith('.')).sort();
    return names.flatMap((n) => {
      const file = join(path, n);
      return statSync(file).isFile() ? [{ file, text: readFileSync(file, 'utf8') }] : [];
    });
  } catch (e) {
    return fail(e);
  }
};

export function firewallTable(env: Env): string {
  const t = env.EGRESS_FIREWALL_TABLE || DEFAULT_TABLE;
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(t)) die(`EGRESS_FIREWALL_TABLE '${t}' is invalid, must be letters, digits and _`);
  return t;
}

export function firewallConfig(env: Env, read: PolicyReader = readPolicyFiles): FirewallConfig {
  const maxRules = intVar(env, 'EGRESS_FIREWALL_MAX_RULES', 50, 1, 100_000);
  const dnsView = flag(env, 'EGRESS_FIREWALL_DNS_VIEW');
  const iface = env.EGRESS_FIREWALL_INTERFACE?.trim() || undefined;
  if (iface !== undefined && !/^[^\s/]{1,15}$/.test(iface)) die(`EGRESS_FIREWALL_INTERFACE '${iface}' is not an interface name`);
  const clusterCidrs = cidrList(env.EGRESS_FIREWALL_CLUSTER_CIDRS, 'EGRESS_FIREWALL_CLUSTER_CIDRS');
  const defaultSources = cidrList(env.EGRESS_FIREWALL_SOURCES, 'EGRESS_FIREWALL_SOURCES');
  const path = env.EGRESS_FIREWALL_POLICY?.trim();
  if (!path) die('EGRESS_FIREWALL_POLICY unspecified');
  const files = read(path);
  const raw = files.flatMap((f) => parsePolicyText(f.file, f.text, { maxRules, dnsView }));
  const all = raw.map((p): FwPolicy => {
    const note = p.annotations[SOURCES_ANNOTATION];
    const sources = note !== undefined ? cidrList(note, `annotation ${SOURCES_ANNOTATION} of EgressNetworkPolicy "${p.name}"`) : defaultSources;
    if (sources.length === 0) die(`EgressNetworkPolicy "${p.name}" applies to no sources: set EGRESS_FIREWALL_SOURCES or its ${SOURCES_ANNOTATION} annotation`);
    return { ...p, sources, ipv6: sources.some((s) => s.family === 6) };
  });
  const { policies, conflicts } = splitConflicts(all);
  return {
    path, policies, conflicts, read: raw.length, interface: iface, clusterCidrs, maxRules, table: firewallTable(env),
    linear: flag(env, 'EGRESS_FIREWALL_LINEAR'), dnsView,
    dnsGraceS: intVar(env, 'EGRESS_FIREWALL_DNS_GRACE', 30, 0, 86_400),
    dnsTimeoutMs: intVar(env, 'EGRESS_FIREWALL_DNS_TIMEOUT', 250, 1, 60_000),
    dnsPort: intVar(env, 'EGRESS_FIREWALL_DNS_PORT', 15353, 1, 65_000),
    digest: policyDigest(files),
  };
}

/** openshift-sdn's rule: an empty policy does not count; two non-empty ones in a namespace drop its traffic. */
function splitConflicts(all: readonly FwPolicy[]): { policies: FwPolicy[]; conflicts: Conflict[] } {
  const byNs = new Map<string, FwPolicy[]>();
  for (const p of all) if (p.rules.length > 0) byNs.set(p.namespace, [...(byNs.get(p.namespace) ?? []), p]);
  const conflicts: Conflict[] = [];
  for (const [namespace, ps] of byNs) {
    if (ps.length < 2) continue;
    const sources = [...new Map(ps.flatMap((p) => p.sources).map((c) => [cidrText(c), c])).values()];
    conflicts.push({ namespace, sources, message: `multiple EgressNetworkPolicies in same network namespace (${namespace}) is not allowed; dropping all traffic` });
  }
  const bad = new Set(conflicts.map((c) => c.namespace));
  return { policies: all.filter((p) => p.rules.length > 0 && !bad.has(p.namespace)), conflicts };
}

export function policyDigest(files: readonly PolicyFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.file}\0${f.text}\0`);
  return h.digest('hex');
}

export function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** Comma (or space) separated CIDRs; a bare IP is a host route. Host bits are cleared. */
export function cidrList(value: string | undefined, what: string): Cidr[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean).map((s) => {
    const c = parseCidr(s);
    if (!c) die(`${what} '${s}' is not an IP address or CIDR`);
    return { address: networkOf(c), family: c.family, prefix: c.prefix };
  });
}

function flag(env: Env, name: string): boolean {
  const v = env[name] ?? '';
  if (v !== '' && v !== '0' && v !== '1') die(`${name} '${v}' is invalid, must be 0 or 1`);
  return v === '1';
}

function intVar(env: Env, name: string, dflt: number, min: number, max: number): number {
  const v = env[name]?.trim();
  if (v === undefined || v === '') return dflt;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) die(`${name} '${v}' is invalid, must be a number from ${min} to ${max}`);
  return Number(v);
}
