/**
 * Property: for random rule lists and targets, the engine's decision equals a
 * deliberately naive reference model written here (string and arithmetic
 * definitions, no shared code with the engine beyond the grammar's parser).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { compilePolicy } from '../../src/engines/http-proxy/policy.js';
import { route } from '../../src/engines/http-proxy/route.js';
import { DEFAULT_LIMITS, newHttpStats, type Runtime } from '../../src/engines/http-proxy/runtime.js';
import { normaliseHost } from '../../src/config/host.js';

// A small world so that random rules and targets collide often.
const NAMES = ['ex', 'a.ex', 'b.ex', 'a.b.ex', 'b', 'a.b', 'aex'];
const IPS = ['10.0.0.1', '10.0.1.1', '10.1.0.1', '192.0.2.1', '192.0.2.200'];

type MRule = { deny: boolean; kind: 'host' | 'domain'; name: string } | { deny: boolean; kind: 'cidr'; net: string; len: number };

const rule: fc.Arbitrary<MRule> = fc.oneof(
  fc.record({ deny: fc.boolean(), kind: fc.constant('host' as const), name: fc.constantFrom(...NAMES) }),
  fc.record({ deny: fc.boolean(), kind: fc.constant('domain' as const), name: fc.constantFrom(...NAMES) }),
  fc.record({ deny: fc.boolean(), kind: fc.constant('cidr' as const), net: fc.constantFrom(...IPS), len: fc.constantFrom(8, 16, 24, 25, 32) }),
);

function ruleText(r: MRule, upper: boolean): string {
  const t = r.kind === 'cidr' ? `${r.net}/${r.len}` : r.kind === 'domain' ? `*.${r.name}` : r.name;
  return (r.deny ? '!' : '') + (upper ? t.toUpperCase() : t);
}

const toInt = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** Reference: a rule matches the name (host/domain) or the address (cidr). */
function modelMatches(r: MRule, name: string | undefined, ip: string): boolean {
  if (r.kind === 'cidr') {
    const block = 2 ** (32 - r.len);
    return Math.floor(toInt(ip) / block) === Math.floor(toInt(r.net) / block);
  }
  if (name === undefined) return false;
  return r.kind === 'host' ? name === r.name : name === r.name || name.endsWith('.' + r.name);
}

function modelAllows(rules: MRule[], star: boolean, name: string | undefined, ips: string[]): boolean {
  // Every address must be allowed by its first matching rule; no address, no connection.
  if (ips.length === 0) return false;
  return ips.every((ip) => {
    const r = rules.find((x) => modelMatches(x, name, ip));
    return r ? !r.deny : star;
  });
}

/** Spellings of an IPv4 address the engine must see through. */
function spell(ip: string, how: number): string {
  const o = ip.split('.').map(Number);
  switch (how) {
    case 1: return String(toInt(ip));
    case 2: return '0x' + toInt(ip).toString(16);
    case 3: return o.map((x) => '0' + x.toString(8)).join('.');
    case 4: return `[::ffff:${ip}]`;
    case 5: return ip + '.';
    case 6: return `${o[0]}.${o[1]}.${o[2]! * 256 + o[3]!}`;
    default: return ip;
  }
}

function runtime(text: string, dns: Record<string, string[]>): Runtime {
  return {
    policy: compilePolicy(parseHttpProxyDestinations(text)), draining: false, stats: newHttpStats(),
    resolve: async (n) => (dns[n] ?? []).map((address) => ({ address, family: 4 as const })),
    limits: DEFAULT_LIMITS, logger: undefined as never, access: undefined as never, debug: false, localAddress: undefined, connectPorts: undefined,
  };
}

describe('policy engine equals the reference model', () => {
  it('names (any case, trailing dot) resolving to random addresses', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(rule, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.boolean(),
      fc.constantFrom(...NAMES), fc.array(fc.constantFrom(...IPS), { maxLength: 3 }), fc.boolean(), fc.boolean(),
      async (rules, star, upper, name, ips, nameUpper, dot) => {
        const rt = runtime(rules.map((r) => ruleText(r, upper)).join('\n') + (star ? '\n*' : ''), { [name]: ips });
        const written = (nameUpper ? name.toUpperCase() : name) + (dot ? '.' : '');
        const host = normaliseHost(written)!;
        const r = await route(rt, { host, port: 80 });
        expect(r.ok).toBe(modelAllows(rules, star, name, ips));
        if (r.ok) expect(r.addresses.map((a) => a.address)).toEqual(ips);
      }), { numRuns: 2000 });
  });

  it('IP literals in random spellings', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(rule, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.constantFrom(...IPS), fc.integer({ min: 0, max: 6 }),
      async (rules, star, ip, how) => {
        const rt = runtime(rules.map((r) => ruleText(r, false)).join('\n') + (star ? '\n*' : ''), {});
        const host = normaliseHost(spell(ip, how));
        expect(host).toEqual({ kind: 'ip', family: 4, address: ip });
        const r = await route(rt, { host: host!, port: 443 });
        expect(r.ok).toBe(modelAllows(rules, star, undefined, [ip]));
        if (r.ok) expect(r.addresses).toEqual([{ address: ip, family: 4 }]);
      }), { numRuns: 2000 });
  });
});
