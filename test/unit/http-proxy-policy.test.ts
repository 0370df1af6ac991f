/**
 * The HTTP proxy's decision, pure: target normalisation (every IP spelling a
 * resolver accepts), first match wins, names vs resolved addresses.
 */
import { describe, expect, it } from 'vitest';
import { parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { compilePolicy, decideHost, decideName, decideNameEarly, denialText } from '../../src/engines/http-proxy/policy.js';
import { parseAbsoluteUrl, parseAuthority } from '../../src/engines/http-proxy/target.js';
import { normaliseHost, parseInetAton } from '../../src/config/host.js';

const policy = (s: string) => compilePolicy(parseHttpProxyDestinations(s));
const v4 = (address: string) => ({ address, family: 4 as const });
const v6 = (address: string) => ({ address, family: 6 as const });

describe('IP literals in every spelling are one address', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0X7F.0.0.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['10.0.0.1.', '10.0.0.1'],
    ['0x0a.0.0.1.', '10.0.0.1'],
    ['[::ffff:10.0.0.1]', '10.0.0.1'],
    ['[::ffff:a00:1]', '10.0.0.1'],
    ['[0:0:0:0:0:ffff:0a00:0001]', '10.0.0.1'],
    ['::ffff:a00:1', '10.0.0.1'],
  ])('%s is IPv4 %s', (raw, address) => {
    expect(normaliseHost(raw)).toEqual({ kind: 'ip', family: 4, address });
  });

  it.each([
    ['[2001:DB8::1]', '2001:db8::1'],
    ['[2001:0db8:0000:0000:0000:0000:0000:0001]', '2001:db8::1'],
    ['[::1]', '::1'],
  ])('%s is IPv6 %s', (raw, address) => {
    expect(normaliseHost(raw)).toEqual({ kind: 'ip', family: 6, address });
  });

  it.each(['256.0.0.1', '1.2.3.4.5', '0x100.1.1.1', '4294967296', '08.1.1.1', '1..2', 'a.1', '[fe80::1%eth0]', '[1.2.3.4', 'exa mple.com', '', '.', '-a.com'])(
    '%j is refused', (raw) => {
      expect(normaliseHost(raw)).toBeUndefined();
    });

  it('names are lower-cased, one trailing dot dropped', () => {
    expect(normaliseHost('WWW.Example.COM.')).toEqual({ kind: 'name', name: 'www.example.com' });
    expect(normaliseHost('0x7f.example')).toEqual({ kind: 'name', name: '0x7f.example' });
  });

  it('inet_aton limits per part count', () => {
    expect(parseInetAton('1.16777215')).toBe('1.255.255.255');
    expect(parseInetAton('1.16777216')).toBeUndefined();
    expect(parseInetAton('1.2.65535')).toBe('1.2.255.255');
    expect(parseInetAton('0x')).toBe('0.0.0.0');
  });
});

describe('request targets', () => {
  it('CONNECT authority needs a port; IPv6 in brackets', () => {
    expect(parseAuthority('Example.com:443')).toEqual({ host: { kind: 'name', name: 'example.com' }, port: 443 });
    expect(parseAuthority('[2001:db8::1]:8443')).toEqual({ host: { kind: 'ip', family: 6, address: '2001:db8::1' }, port: 8443 });
    for (const bad of ['example.com', 'example.com:0', 'example.com:65536', 'example.com:x', '2001:db8::1:443', '[::1]x:1']) expect(parseAuthority(bad)).toBeUndefined();
  });

  it('absolute-form URLs: default port, path and query kept, fragment and userinfo refused', () => {
    expect(parseAbsoluteUrl('http://a.example/x?y=1#f')).toEqual({ host: { kind: 'name', name: 'a.example' }, port: 80, path: '/x?y=1', authority: 'a.example' });
    expect(parseAbsoluteUrl('HTTP://[::1]:81')).toEqual({ host: { kind: 'ip', family: 6, address: '::1' }, port: 81, path: '/', authority: '[::1]:81' });
    expect(parseAbsoluteUrl('http://h?q')?.path).toBe('/?q');
    for (const bad of ['/x', 'https://a/', 'http://user@a/', 'http://', 'ftp://a/']) expect(parseAbsoluteUrl(bad)).toBeUndefined();
  });
});

describe('decisions', () => {
  it('host rules: case-insensitive, trailing dot ignored, no subdomains', () => {
    const p = policy('www.example.com');
    expect(decideNameEarly(p, 'www.example.com')?.allow).toBe(true);
    expect(decideNameEarly(p, 'a.www.example.com')?.allow).toBe(false);
    expect(decideNameEarly(p, 'example.com')?.allow).toBe(false);
  });

  it('*.domain matches the domain and every subdomain, not look-alikes', () => {
    const p = policy('*.example.com');
    for (const n of ['example.com', 'a.example.com', 'a.b.example.com']) expect(decideNameEarly(p, n)?.allow).toBe(true);
    for (const n of ['badexample.com', 'example.com.evil.net', 'com']) expect(decideNameEarly(p, n)?.allow).toBe(false);
  });

  it('first match wins: a deny before an allow, and the reverse', () => {
    expect(decideNameEarly(policy('!bad.example.com\n*.example.com'), 'bad.example.com')).toMatchObject({ allow: false, rule: { text: '!bad.example.com', line: 1 } });
    expect(decideNameEarly(policy('*.example.com\n!bad.example.com'), 'bad.example.com')).toMatchObject({ allow: true, rule: { line: 1 } });
  });

  it('CIDR rules match IP literals of both families', () => {
    const p = policy('!10.1.0.0/16\n10.0.0.0/8\n2001:db8::/32');
    expect(decideHost(p, { kind: 'ip', ...v4('10.2.3.4') })).toMatchObject({ allow: true, rule: { text: '10.0.0.0/8' } });
    expect(decideHost(p, { kind: 'ip', ...v4('10.1.3.4') })).toMatchObject({ allow: false, rule: { text: '!10.1.0.0/16' } });
    expect(decideHost(p, { kind: 'ip', ...v6('2001:db8:1::5') }).allow).toBe(true);
    expect(decideHost(p, { kind: 'ip', ...v6('2001:db9::5') })).toEqual({ allow: false, rule: undefined, index: -1 });
  });

  it('host rules never match IP literals', () => {
    expect(decideHost(policy('localhost'), { kind: 'ip', ...v4('127.0.0.1') }).allow).toBe(false);
  });

  it('a name needs addresses when a CIDR rule comes first, and every address must be allowed', () => {
    const p = policy('!10.0.0.0/8\n*.example.com');
    expect(decideNameEarly(p, 'a.example.com')).toBeUndefined();
    expect(decideName(p, 'a.example.com', [v4('203.0.113.5')])).toMatchObject({ allow: true, addresses: [v4('203.0.113.5')] });
    // One answer in the denied range denies the whole name (rebinding).
    expect(decideName(p, 'a.example.com', [v4('203.0.113.5'), v4('10.0.0.1')])).toMatchObject({ allow: false, rule: { text: '!10.0.0.0/8' }, addresses: [] });
  });

  it('a name allowed by CIDR through its addresses', () => {
    const p = policy('203.0.113.0/24');
    expect(decideName(p, 'svc.example', [v4('203.0.113.7')]).allow).toBe(true);
    expect(decideName(p, 'svc.example', [v4('198.51.100.1')])).toMatchObject({ allow: false, rule: undefined });
  });

  it('a name rule first decides without DNS; * allows the rest', () => {
    expect(decideNameEarly(policy('!evil.example\n10.0.0.0/8'), 'evil.example')?.allow).toBe(false);
    expect(decideNameEarly(policy('!evil.example\n*'), 'good.example')).toEqual({ allow: true, rule: undefined, index: -1 });
    expect(decideNameEarly(policy('good.example'), 'other.example')).toEqual({ allow: false, rule: undefined, index: -1 });
  });

  it('403 bodies name the rule, or say no rule allowed it', () => {
    const p = policy('a.example\n!*.evil.example\n*');
    expect(denialText(decideNameEarly(p, 'x.evil.example')!)).toBe('denied by rule 2: !*.evil.example\n');
    expect(denialText(decideNameEarly(policy('a.example'), 'b.example')!)).toBe('denied: no rule allowed it\n');
  });
});
