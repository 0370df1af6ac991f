/**
 * One host grammar, one meaning (src/config/host.ts): a rule and a request
 * that name the same address mean the same address, in every grammar.
 */
import { describe, expect, it } from 'vitest';
import { describeHttpPolicy, parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { parseDnsProxyDestinations } from '../../src/config/dns-proxy.js';
import { parseRedirectDestinations } from '../../src/config/redirect.js';
import { unmapText } from '../../src/config/ip.js';
import { compilePolicy, decideHost } from '../../src/engines/http-proxy/policy.js';
import { normaliseHost } from '../../src/config/host.js';
import { parseAuthority } from '../../src/engines/http-proxy/target.js';
import { errorOf } from './config-error.js';

const policy = (s: string) => compilePolicy(parseHttpProxyDestinations(s));
const request = (authority: string) => {
  const t = parseAuthority(authority, 80)!;
  if (t.host.kind !== 'ip') throw new Error(`${authority} is not an IP literal`);
  return t.host;
};

describe('HTTP proxy rules normalise IP spellings as requests do', () => {
  const SPELLINGS = ['0x7f.0.0.1', '127.1', '2130706433', '0177.0.0.1', '127.0.0.1.', '::ffff:7f00:1', '[::ffff:127.0.0.1]', '127.0.0.1'];
  it.each(SPELLINGS)('rule !%s then * denies 127.0.0.1 in every spelling', (rule) => {
    const p = policy(`!${rule}\n*`);
    for (const req of ['127.0.0.1', '0x7f.0.0.1', '127.1', '[::ffff:7f00:1]', '2130706433']) {
      expect(decideHost(p, request(req)).allow, `${rule} vs ${req}`).toBe(false);
    }
    expect(decideHost(p, request('127.0.0.2')).allow).toBe(true);
  });
  it('the rule is the canonical address; check says what a spelling became', () => {
    const p = parseHttpProxyDestinations('!0x7f.0.0.1\n[::ffff:a00:1]\n192.0.2.7\n[2001:DB8::1]\n*');
    expect(p.rules.map((r) => r.target)).toEqual([
      { kind: 'cidr', cidr: { address: '127.0.0.1', family: 4, prefix: 32 }, written: '0x7f.0.0.1' },
      { kind: 'cidr', cidr: { address: '10.0.0.1', family: 4, prefix: 32 }, written: '[::ffff:a00:1]' },
      { kind: 'cidr', cidr: { address: '192.0.2.7', family: 4, prefix: 32 } },
      { kind: 'cidr', cidr: { address: '2001:db8::1', family: 6, prefix: 128 } },
    ]);
    expect(describeHttpPolicy(p)).toEqual([
      '1. deny 127.0.0.1/32 (written 0x7f.0.0.1)',
      '2. allow 10.0.0.1/32 (written [::ffff:a00:1])',
      '3. allow 192.0.2.7/32',
      '4. allow 2001:db8::1/128',
      '5. allow everything else (*)',
    ]);
  });
  it('a short inet_aton form is the address a request to it reaches', () => {
    // "1.2.3" was refused as a typo; a request to http://1.2.3/ goes to 1.2.0.3.
    expect(describeHttpPolicy(parseHttpProxyDestinations('!1.2.3'))).toEqual(['1. deny 1.2.0.3/32 (written 1.2.3)', '2. deny everything else']);
  });
  it('CIDRs: four-part inet_aton addresses and IPv4-mapped ranges are the IPv4 range', () => {
    const p = parseHttpProxyDestinations('!0x0a.0.0.0/8\n!::ffff:192.168.0.0/112\n::ffff:0:0/80');
    expect(p.rules.map((r) => r.target)).toEqual([
      { kind: 'cidr', cidr: { address: '10.0.0.0', family: 4, prefix: 8 }, written: '0x0a.0.0.0' },
      { kind: 'cidr', cidr: { address: '192.168.0.0', family: 4, prefix: 16 }, written: '::ffff:192.168.0.0' },
      // Wider than the mapped range: stays an IPv6 range.
      { kind: 'cidr', cidr: { address: '::', family: 6, prefix: 80 } },
    ]);
    expect(decideHost(compilePolicy(p), request('0xa.1')).allow).toBe(false);
    expect(decideHost(compilePolicy(p), request('[::ffff:c0a8:101]')).allow).toBe(false);
  });
  // "10/8" is 0.0.0.10 to inet_aton but 10.0.0.0/8 to a reader: a prefix needs a full address.
  it.each(['10/8', '10.1/16', '0x7f.1/8', '*.0x7f.0.0.1', '*.10.0.0.1'])('%j -> Bad destination', (line) => {
    expect(errorOf(() => parseHttpProxyDestinations(line))).toBe(`Bad destination '${line}'`);
  });
});

describe('the other grammars use the same IP literals', () => {
  it('DNS proxy: IPv4-mapped IPv6 is the IPv4 address; a numeric last label is never a DNS name', () => {
    expect(parseDnsProxyDestinations('80 ::ffff:7f00:1\n81 [::ffff:10.0.0.1] 80').map((f) => f.target)).toEqual([
      { kind: 'ip', address: '127.0.0.1', family: 4 }, { kind: 'ip', address: '10.0.0.1', family: 4 },
    ]);
    expect(errorOf(() => parseDnsProxyDestinations('80 0x7f.0.0.1'))).toBe("Bad destination '80 0x7f.0.0.1'");
    expect(errorOf(() => parseDnsProxyDestinations('80 127.1'))).toBe("Bad destination '80 127.1'");
  });
  it('redirect: dotted quads only (the image), IPv4-mapped IPv6 is the IPv4 address', () => {
    expect(parseRedirectDestinations('80 tcp ::ffff:203.0.113.1\n::ffff:cb00:7102', 4)).toEqual({
      mappings: [{ protocol: 'tcp', localPort: 80, ip: '203.0.113.1', remotePort: 80 }], fallback: '203.0.113.2' });
    expect(errorOf(() => parseRedirectDestinations('80 tcp 0x7f.0.0.1', 4))).toBe("EGRESS_DESTINATION value '80 tcp 0x7f.0.0.1' is invalid");
  });
});

describe('one way to strip ::ffff:', () => {
  it.each([['::ffff:1.2.3.4', '1.2.3.4'], ['::FFFF:1.2.3.4', '1.2.3.4'], ['::ffff:7f00:1', '127.0.0.1'], ['1.2.3.4', '1.2.3.4'],
    ['2001:db8::1', '2001:db8::1'], ['::1', '::1'], ['?', '?']])('%s -> %s', (a, b) => {
    expect(unmapText(a)).toBe(b);
  });
  it('requests use it too', () => {
    expect(normaliseHost('[::FFFF:7F00:1]')).toEqual({ kind: 'ip', address: '127.0.0.1', family: 4 });
  });
});
