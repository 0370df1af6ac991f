/**
 * The HTTP-proxy and DNS-proxy grammars. The messages quoted by the issue are
 * the OpenShift images' own and are asserted verbatim.
 */
import { describe, expect, it } from 'vitest';
import { describeHttpPolicy, parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { describeDnsProxy, parseDnsProxyDestinations } from '../../src/config/dns-proxy.js';
import { errorOf } from './config-error.js';


const http = parseHttpProxyDestinations;

describe('EGRESS_HTTP_PROXY_DESTINATION valid forms', () => {
  it('IP, CIDR (network address), hostname, *.domain, denies, then *', () => {
    const p = http('!*.Internal.Example.com\n!10.1.2.3/8\n192.0.2.7\nwww.Example.com.\n*.example.org\n*');
    expect(p).toEqual({
      defaultAllow: true,
      rules: [
        { action: 'deny', target: { kind: 'domain', name: 'internal.example.com' }, text: '!*.Internal.Example.com', line: 1 },
        { action: 'deny', target: { kind: 'cidr', cidr: { address: '10.0.0.0', family: 4, prefix: 8 } }, text: '!10.1.2.3/8', line: 2 },
        { action: 'allow', target: { kind: 'cidr', cidr: { address: '192.0.2.7', family: 4, prefix: 32 } }, text: '192.0.2.7', line: 3 },
        { action: 'allow', target: { kind: 'host', name: 'www.example.com' }, text: 'www.Example.com.', line: 4 },
        { action: 'allow', target: { kind: 'domain', name: 'example.org' }, text: '*.example.org', line: 5 },
      ],
    });
    expect(describeHttpPolicy(p)).toEqual([
      '1. deny internal.example.com and its subdomains',
      '2. deny 10.0.0.0/8',
      '3. allow 192.0.2.7/32',
      '4. allow www.example.com',
      '5. allow example.org and its subdomains',
      '6. allow everything else (*)',
    ]);
  });
  it('IPv6 addresses and CIDRs, bare or in brackets', () => {
    const p = http('2001:DB8::1\n[2001:db8::2]\n!2001:db8:ff::5/48\n[2001:db8:1::]/64');
    expect(p.defaultAllow).toBe(false);
    expect(describeHttpPolicy(p)).toEqual([
      '1. allow 2001:db8::1/128',
      '2. allow 2001:db8::2/128',
      '3. deny 2001:db8:ff::/48',
      '4. allow 2001:db8:1::/64',
      '5. deny everything else',
    ]);
  });
  it('a lone * allows everything; comments, CRLF and whitespace are ignored; line numbers are original', () => {
    expect(describeHttpPolicy(http('  *  \r\n'))).toEqual(['1. allow everything else (*)']);
    const p = http('# allowed sites\r\n\r\n  example.com   # the site\r\n');
    expect(p.rules).toEqual([{ action: 'allow', target: { kind: 'host', name: 'example.com' }, text: 'example.com', line: 3 }]);
  });
});

describe('EGRESS_HTTP_PROXY_DESTINATION errors (exact text)', () => {
  it.each([undefined, '', ' \r\n ', '# nothing\n'])('%j -> No EGRESS_HTTP_PROXY_DESTINATION specified', (v) => {
    expect(errorOf(() => http(v))).toBe('No EGRESS_HTTP_PROXY_DESTINATION specified');
  });
  it('* not last, even before a comment-free line or a second *', () => {
    expect(errorOf(() => http('*\nexample.com'))).toBe('Wildcard must be last rule, if present');
    expect(errorOf(() => http('*\n*'))).toBe('Wildcard must be last rule, if present');
  });
  it('a trailing comment after * is not a rule', () => {
    expect(http('example.com\n*\n# end').defaultAllow).toBe(true);
  });
  it.each(['10.0.0.1/33', '256.1.1.1', 'exa mple.com', '!*', '!', '*.', '*.-bad.com', 'http://example.com', 'example.com:80',
    'bad_host-.com', '2001:db8::/129', '[2001:db8::1', '**.example.com', 'example.com/path'])('%j -> Bad destination', (line) => {
    expect(errorOf(() => http(`example.net\n${line}`))).toBe(`Bad destination '${line}'`);
  });
});

const dns = parseDnsProxyDestinations;

describe('EGRESS_DNS_PROXY_DESTINATION valid forms', () => {
  it('<port> <ip-or-name> and <port> <ip-or-name> <remote_port>, IPv6 bare or bracketed', () => {
    const f = dns('# forwards\r\n  80 203.0.113.25\r\n8080 Www.Example.COM. 80\n8443 [2001:DB8::1] 443\n9000 2001:db8::2\n');
    expect(f).toEqual([
      { localPort: 80, target: { kind: 'ip', address: '203.0.113.25', family: 4 }, remotePort: 80, text: '80 203.0.113.25' },
      { localPort: 8080, target: { kind: 'name', name: 'www.example.com' }, remotePort: 80, text: '8080 Www.Example.COM. 80' },
      { localPort: 8443, target: { kind: 'ip', address: '2001:db8::1', family: 6 }, remotePort: 443, text: '8443 [2001:DB8::1] 443' },
      { localPort: 9000, target: { kind: 'ip', address: '2001:db8::2', family: 6 }, remotePort: 9000, text: '9000 2001:db8::2' },
    ]);
    expect(describeDnsProxy(f)).toEqual([
      'port 80 -> 203.0.113.25:80',
      'port 8080 -> www.example.com:80',
      'port 8443 -> [2001:db8::1]:443',
      'port 9000 -> [2001:db8::2]:9000',
    ]);
  });
});

describe('EGRESS_DNS_PROXY_DESTINATION errors (exact text)', () => {
  it.each([undefined, '', '\n \n', '# only\r\n'])('%j -> Must specify EGRESS_DNS_PROXY_DESTINATION', (v) => {
    expect(errorOf(() => dns(v))).toBe('Must specify EGRESS_DNS_PROXY_DESTINATION');
  });
  it.each(['80', '80 example.com 81 82', '80 1.2.3', '80 999.1.1.1', '80 bad_name-', '80 *.example.com', '80 http://x'])('%j -> Bad destination', (line) => {
    expect(errorOf(() => dns(line))).toBe(`Bad destination '${line}'`);
  });
  it.each([['0 example.com', '0'], ['65536 example.com', '65536'], ['80 example.com 70000', '70000']])(
    '%j -> Invalid port', (line, n) => {
      expect(errorOf(() => dns(line))).toBe(`Invalid port: ${n}, must be in the range 1 to 65535`);
    });
  // The image (egress-dns-proxy.sh) matches the line against its four forms
  // (port words are digits, the target an address or name shape) and dies with
  // Bad destination when none matches; only then validates the local port, the
  // remote port, and last the port's uniqueness.
  it.each([
    ['abc example.com', "Bad destination 'abc example.com'"],
    ['http example.com', "Bad destination 'http example.com'"],
    ['-1 example.com', "Bad destination '-1 example.com'"],
    ['80 example.com abc', "Bad destination '80 example.com abc'"],
    ['70000 http://x', "Bad destination '70000 http://x'"],
    ['70000 example.com', 'Invalid port: 70000, must be in the range 1 to 65535'],
    ['0 example.com 70000', 'Invalid port: 0, must be in the range 1 to 65535'],
    ['70000 999.1.1.1', 'Invalid port: 70000, must be in the range 1 to 65535'],
    ['80 a.example.com\n80 b.example.com 70000', 'Invalid port: 70000, must be in the range 1 to 65535'],
  ])('image order: %j -> %s', (v, msg) => {
    expect(errorOf(() => dns(v))).toBe(msg);
  });
  it('a local port used twice', () => {
    expect(errorOf(() => dns('80 a.example.com\n80 b.example.com 8080'))).toBe('Proxy port 80 already used, must be unique for each destination');
  });
});
