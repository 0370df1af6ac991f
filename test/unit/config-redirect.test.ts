/**
 * The redirect contract (EGRESS_SOURCE / EGRESS_GATEWAY / EGRESS_DESTINATION).
 * Error texts are asserted verbatim: operators' runbooks and alerts match the
 * OpenShift egress-router script's messages word for word.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { parseGateway, parseRedirectConfig, parseRedirectDestinations, parseSource } from '../../src/config/redirect.js';
import { errorOf } from './config-error.js';

/** The exact message a call dies with (and that it is a ConfigError). */

const v4 = { EGRESS_SOURCE: '192.168.12.99', EGRESS_GATEWAY: '192.168.12.1' };
const dest = (d: string) => parseRedirectConfig({ ...v4, EGRESS_DESTINATION: d }).destinations;

describe('parseSource', () => {
  it('accepts a bare IPv4 address (no prefix recorded)', () => {
    expect(parseSource('192.168.12.99')).toEqual({ address: '192.168.12.99', family: 4 });
  });
  it('keeps the prefix of IP/len and trims surrounding whitespace', () => {
    expect(parseSource('  192.168.12.99/24\t')).toEqual({ address: '192.168.12.99', family: 4, prefix: 24 });
  });
  it('drops a full-length prefix (/32, /128): same as a bare address', () => {
    expect(parseSource('10.0.0.1/32')).toEqual({ address: '10.0.0.1', family: 4 });
    expect(parseSource('2001:db8::5/128')).toEqual({ address: '2001:db8::5', family: 6 });
  });
  it('accepts IPv6 and canonicalises it (lower case, compressed)', () => {
    expect(parseSource('2001:DB8:0:0:0:0:0:5/64')).toEqual({ address: '2001:db8::5', family: 6, prefix: 64 });
  });
  it.each([undefined, '', '   ', 'abc', '10.0.0', '10.0.0.256', '10.0.0.1/33', '10.0.0.1/', '10.0.0.1/x', '2001:db8::1/129', 'host.example'])(
    'rejects %j with the image message', (v) => {
      expect(errorOf(() => parseSource(v))).toBe('EGRESS_SOURCE unspecified or invalid');
    });
});

describe('parseGateway', () => {
  const s4 = parseSource('192.168.12.99/24');
  const s6 = parseSource('2001:db8::5/64');
  it('accepts an IP of the same family, trimmed and canonical', () => {
    expect(parseGateway(' 192.168.12.1 ', s4)).toBe('192.168.12.1');
    expect(parseGateway('2001:DB8::0001', s6)).toBe('2001:db8::1');
  });
  it.each([undefined, '', 'gw', '192.168.12.1/24', '300.1.1.1'])('rejects %j with the image message', (v) => {
    expect(errorOf(() => parseGateway(v, s4))).toBe('EGRESS_GATEWAY unspecified or invalid');
  });
  it('explains a family mismatch', () => {
    expect(errorOf(() => parseGateway('2001:db8::1', s4))).toBe("EGRESS_GATEWAY '2001:db8::1' is IPv6 but EGRESS_SOURCE is IPv4");
    expect(errorOf(() => parseGateway('192.168.12.1', s6))).toBe("EGRESS_GATEWAY '192.168.12.1' is IPv4 but EGRESS_SOURCE is IPv6");
  });
});

describe('EGRESS_DESTINATION valid forms', () => {
  it('a single IP alone is the fallback for every port', () => {
    expect(dest('203.0.113.25')).toEqual({ mappings: [], fallback: '203.0.113.25' });
  });
  it('multi-line mappings, remote port defaults to the local port, then a fallback', () => {
    expect(dest('80 tcp 203.0.113.25\n8080 tcp 203.0.113.26 80\n8443 tcp 203.0.113.26 443\n53 udp 203.0.113.27\n203.0.113.28')).toEqual({
      mappings: [
        { protocol: 'tcp', localPort: 80, ip: '203.0.113.25', remotePort: 80 },
        { protocol: 'tcp', localPort: 8080, ip: '203.0.113.26', remotePort: 80 },
        { protocol: 'tcp', localPort: 8443, ip: '203.0.113.26', remotePort: 443 },
        { protocol: 'udp', localPort: 53, ip: '203.0.113.27', remotePort: 53 },
      ],
      fallback: '203.0.113.28',
    });
  });
  it('no fallback key at all when there is none (unmapped ports refused)', () => {
    expect(dest('80 tcp 203.0.113.25')).toStrictEqual({ mappings: [{ protocol: 'tcp', localPort: 80, ip: '203.0.113.25', remotePort: 80 }] });
  });
  it('ignores blank lines, # comments (whole and trailing), CRLF and surrounding whitespace', () => {
    const value = '# ConfigMap header\r\n\r\n   80   tcp\t203.0.113.25   # web\r\n\t# indented comment\r\n 203.0.113.28 \r\n# trailing comment after fallback\r\n';
    expect(dest(value)).toEqual({ mappings: [{ protocol: 'tcp', localPort: 80, ip: '203.0.113.25', remotePort: 80 }], fallback: '203.0.113.28' });
  });
  it('the same port on tcp and udp is two distinct mappings', () => {
    expect(dest('53 tcp 203.0.113.1\n53 udp 203.0.113.1').mappings).toHaveLength(2);
  });
  it('accepts the port bounds 1 and 65535', () => {
    expect(dest('1 tcp 203.0.113.1 65535').mappings).toEqual([{ protocol: 'tcp', localPort: 1, ip: '203.0.113.1', remotePort: 65535 }]);
  });
  it('IPv6 source, gateway and destinations, canonicalised', () => {
    const c = parseRedirectConfig({
      EGRESS_SOURCE: '2001:db8:1::99/64', EGRESS_GATEWAY: '2001:db8:1::1',
      EGRESS_DESTINATION: '80 tcp 2001:DB8:2::0:25\n8080 tcp 2001:db8:2::26 80\n2001:db8:2::28',
    });
    expect(c).toEqual({
      source: { address: '2001:db8:1::99', family: 6, prefix: 64 },
      gateway: '2001:db8:1::1',
      destinations: {
        mappings: [
          { protocol: 'tcp', localPort: 80, ip: '2001:db8:2::25', remotePort: 80 },
          { protocol: 'tcp', localPort: 8080, ip: '2001:db8:2::26', remotePort: 80 },
        ],
        fallback: '2001:db8:2::28',
      },
    });
  });
});

describe('EGRESS_DESTINATION errors (exact text)', () => {
  it.each([undefined, '', '  \n\t', '# only a comment\n\n'])('%j -> EGRESS_DESTINATION unspecified', (v) => {
    expect(errorOf(() => parseRedirectConfig({ ...v4, EGRESS_DESTINATION: v }))).toBe('EGRESS_DESTINATION unspecified');
  });
  it.each([
    ['80 tcp', '80 tcp'],
    ['80 tcp 203.0.113.1 81 82', '80 tcp 203.0.113.1 81 82'],
    ['80 sctp 203.0.113.1', '80 sctp 203.0.113.1'],
    ['80 TCP 203.0.113.1', '80 TCP 203.0.113.1'],
    ['http tcp 203.0.113.1', 'http tcp 203.0.113.1'],
    ['-1 tcp 203.0.113.1', '-1 tcp 203.0.113.1'],
    ['80 tcp 203.0.113.1 x', '80 tcp 203.0.113.1 x'],
    ['80 tcp example.com', '80 tcp example.com'],
    ['80 tcp 203.0.113.0/24', '80 tcp 203.0.113.0/24'],
    ['not-an-ip', 'not-an-ip'],
    // The quoted line is the trimmed text without its comment.
    ['  80   tcp  nope  # c', '80   tcp  nope'],
  ])('%j is invalid', (line, shown) => {
    expect(errorOf(() => dest(line))).toBe(`EGRESS_DESTINATION value '${shown}' is invalid`);
  });
  it('a fallback that is not the last line', () => {
    expect(errorOf(() => dest('203.0.113.28\n80 tcp 203.0.113.25'))).toBe('EGRESS_DESTINATION fallback IP must be the last line');
    expect(errorOf(() => dest('203.0.113.28\n203.0.113.29'))).toBe('EGRESS_DESTINATION fallback IP must be the last line');
  });
  it.each([['0 tcp 203.0.113.1', '0'], ['65536 tcp 203.0.113.1', '65536'], ['80 tcp 203.0.113.1 0', '0'], ['80 udp 203.0.113.1 99999', '99999']])(
    '%j -> Invalid port', (line, n) => {
      expect(errorOf(() => dest(line))).toBe(`Invalid port: ${n}, must be in the range 1 to 65535`);
    });
  // The image (egress-router.sh) matches the line's form first (port words
  // digits, protocol, an IPv4 shape), then validates the remote port, then the
  // local port, then uniqueness; an address of the right shape that is not a
  // valid address is ours to refuse, after the ports.
  it.each([
    ['0 tcp 203.0.113.1 70000', 'Invalid port: 70000, must be in the range 1 to 65535'],
    ['70000 tcp 999.1.1.1', 'Invalid port: 70000, must be in the range 1 to 65535'],
    ['80 tcp 999.1.1.1', "EGRESS_DESTINATION value '80 tcp 999.1.1.1' is invalid"],
    ['70000 tcp 0x7f.0.0.1', "EGRESS_DESTINATION value '70000 tcp 0x7f.0.0.1' is invalid"],
    ['80 tcp 127.1', "EGRESS_DESTINATION value '80 tcp 127.1' is invalid"],
    ['80 tcp 203.0.113.1\n80 tcp 203.0.113.2 70000', 'Invalid port: 70000, must be in the range 1 to 65535'],
  ])('image order: %j -> %s', (v, msg) => {
    expect(errorOf(() => dest(v))).toBe(msg);
  });
  it('a local port used twice on one protocol', () => {
    expect(errorOf(() => dest('80 tcp 203.0.113.1\n80 tcp 203.0.113.2 8080'))).toBe(
      'EGRESS_DESTINATION localport 80 is already used, must be unique for each destination');
  });
  it('a destination of the other family than the source', () => {
    expect(errorOf(() => dest('80 tcp 2001:db8::1'))).toBe("EGRESS_DESTINATION value '80 tcp 2001:db8::1' is IPv6 but EGRESS_SOURCE is IPv4");
    expect(errorOf(() => parseRedirectDestinations('203.0.113.1', 6))).toBe("EGRESS_DESTINATION value '203.0.113.1' is IPv4 but EGRESS_SOURCE is IPv6");
  });
  it('reports the source first, then the gateway, then the destination', () => {
    expect(errorOf(() => parseRedirectConfig({ EGRESS_DESTINATION: '' }))).toBe('EGRESS_SOURCE unspecified or invalid');
    expect(errorOf(() => parseRedirectConfig({ EGRESS_SOURCE: '10.0.0.2' }))).toBe('EGRESS_GATEWAY unspecified or invalid');
  });
});
