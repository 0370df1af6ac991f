/**
 * The shared tokenizer, EGRESS_ROUTER_MODE, the `<VAR>_FILE` indirection and
 * the deployment options (src/config/options.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tokenize } from '../../src/config/lines.js';
import { MODES, parseMode } from '../../src/config/mode.js';
import { destinationValue } from '../../src/config/env.js';
import { DEFAULT_OPTIONS, parseOptions } from '../../src/config/options.js';
import { parseRedirectDestinations, parseSource } from '../../src/config/redirect.js';
import { parseHttpProxyDestinations } from '../../src/config/http-proxy.js';
import { parseDnsProxyDestinations } from '../../src/config/dns-proxy.js';
import { errorOf } from './config-error.js';


describe('tokenize', () => {
  it('splits LF, CRLF and lone CR; keeps original 1-based line numbers', () => {
    expect(tokenize('a b\r\nc\rd\n\ne')).toEqual([
      { number: 1, text: 'a b', fields: ['a', 'b'] },
      { number: 2, text: 'c', fields: ['c'] },
      { number: 3, text: 'd', fields: ['d'] },
      { number: 5, text: 'e', fields: ['e'] },
    ]);
  });
  it('trims surrounding whitespace and splits on runs of spaces and tabs', () => {
    expect(tokenize(' \t80 \t tcp   1.2.3.4\t ')).toEqual([{ number: 1, text: '80 \t tcp   1.2.3.4', fields: ['80', 'tcp', '1.2.3.4'] }]);
  });
  it('drops whole-line and trailing comments, but # inside a word is data', () => {
    expect(tokenize('# header\n   # indented\nx # trailing\ny#not-a-comment\nz\t#tab comment')).toEqual([
      { number: 3, text: 'x', fields: ['x'] },
      { number: 4, text: 'y#not-a-comment', fields: ['y#not-a-comment'] },
      { number: 5, text: 'z', fields: ['z'] },
    ]);
  });
  it('blank and comment-only input gives no lines', () => {
    expect(tokenize('')).toEqual([]);
    expect(tokenize('\r\n  \n#x\r\n')).toEqual([]);
  });
});

describe('parseMode', () => {
  it('unset or empty is legacy, as in the image', () => {
    expect(parseMode(undefined)).toBe('legacy');
    expect(parseMode('')).toBe('legacy');
  });
  it('accepts every known mode', () => {
    expect(MODES).toEqual(['init', 'legacy', 'http-proxy', 'dns-proxy', 'unit-test']);
    for (const m of MODES) expect(parseMode(m)).toBe(m);
  });
  it.each(['x', 'Legacy', 'proxy', ' init'])('%j -> Unrecognized EGRESS_ROUTER_MODE', (m) => {
    expect(errorOf(() => parseMode(m))).toBe(`Unrecognized EGRESS_ROUTER_MODE '${m}'`);
  });
});

describe('<VAR>_FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'erut-env-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'destination');
  writeFileSync(file, '80 tcp 203.0.113.25\r\n203.0.113.28\r\n');

  it('the variable itself when no _FILE is set', () => {
    expect(destinationValue({ EGRESS_DESTINATION: '1.2.3.4' }, 'EGRESS_DESTINATION')).toBe('1.2.3.4');
    expect(destinationValue({}, 'EGRESS_DESTINATION')).toBeUndefined();
  });
  it('the file wins over the variable, read verbatim', () => {
    expect(destinationValue({ EGRESS_DESTINATION: '1.2.3.4', EGRESS_DESTINATION_FILE: file }, 'EGRESS_DESTINATION'))
      .toBe('80 tcp 203.0.113.25\r\n203.0.113.28\r\n');
  });
  it('an empty _FILE is as if unset', () => {
    expect(destinationValue({ EGRESS_DESTINATION: '1.2.3.4', EGRESS_DESTINATION_FILE: '' }, 'EGRESS_DESTINATION')).toBe('1.2.3.4');
  });
  it('an unreadable file is one clear line naming the variable, path and errno code', () => {
    const missing = join(dir, 'missing');
    expect(errorOf(() => destinationValue({ EGRESS_DNS_PROXY_DESTINATION_FILE: missing }, 'EGRESS_DNS_PROXY_DESTINATION')))
      .toBe(`EGRESS_DNS_PROXY_DESTINATION_FILE '${missing}' cannot be read: ENOENT`);
    expect(errorOf(() => destinationValue({ EGRESS_DESTINATION_FILE: dir }, 'EGRESS_DESTINATION'))).toBe(`EGRESS_DESTINATION_FILE '${dir}' cannot be read: EISDIR`);
  });
});

describe('parseOptions', () => {
  it('defaults behave like the image in a pod', () => {
    expect(parseOptions({})).toEqual(DEFAULT_OPTIONS);
    expect(DEFAULT_OPTIONS).toEqual({
      placement: 'pod', clientInterface: 'eth0', macvlan: 'macvlan0', macvlanMode: 'bridge',
      table: 'egress_router', routeTable: 230, fwmark: 0xe6,
    });
  });
  it('reads every option', () => {
    expect(parseOptions({
      EGRESS_PLACEMENT: 'host', EGRESS_CLIENT_INTERFACE: 'br-ex', EGRESS_MACVLAN_MASTER: 'eno1', EGRESS_MACVLAN_MODE: 'private',
      EGRESS_MACVLAN_NETNS: '/proc/42/ns/net', EGRESS_NFT_TABLE: 'my_router', EGRESS_ROUTE_TABLE: '0x100', EGRESS_FWMARK: '4096',
    })).toEqual({
      placement: 'host', clientInterface: 'br-ex', macvlan: 'macvlan0', macvlanMaster: 'eno1', macvlanMode: 'private',
      targetNetns: '/proc/42/ns/net', table: 'my_router', routeTable: 256, fwmark: 4096,
    });
  });
  it.each([
    [{ EGRESS_PLACEMENT: 'node' }, "EGRESS_PLACEMENT 'node' is invalid, must be 'pod' or 'host'"],
    [{ EGRESS_CLIENT_INTERFACE: 'a-very-long-name0' }, "EGRESS_CLIENT_INTERFACE 'a-very-long-name0' is not a valid interface name"],
    [{ EGRESS_MACVLAN_MASTER: 'eth 0' }, "EGRESS_MACVLAN_MASTER 'eth 0' is not a valid interface name"],
    [{ EGRESS_MACVLAN_MODE: 'source' }, "EGRESS_MACVLAN_MODE 'source' is invalid"],
    [{ EGRESS_NFT_TABLE: '1table' }, "EGRESS_NFT_TABLE '1table' is invalid"],
    [{ EGRESS_NFT_TABLE: 'nat-table' }, "EGRESS_NFT_TABLE 'nat-table' is invalid"],
    [{ EGRESS_ROUTE_TABLE: '254' }, "EGRESS_ROUTE_TABLE '254' is invalid"],
    [{ EGRESS_ROUTE_TABLE: '0' }, "EGRESS_ROUTE_TABLE '0' is invalid"],
    [{ EGRESS_ROUTE_TABLE: '12abc' }, "EGRESS_ROUTE_TABLE '12abc' is invalid"],
    [{ EGRESS_FWMARK: '0' }, "EGRESS_FWMARK '0' is invalid"],
    [{ EGRESS_FWMARK: '0x100000000' }, "EGRESS_FWMARK '0x100000000' is invalid"],
    [{ EGRESS_FWMARK: '-1' }, "EGRESS_FWMARK '-1' is invalid"],
  ])('%j -> %s', (env, msg) => {
    expect(errorOf(() => parseOptions(env))).toBe(msg);
  });
});

describe('IPv6 zone identifiers', () => {
  // Node's isIPv6 accepts "fe80::1%eth0"; the zone used to be dropped silently
  // (the address became "fe80::1"), so it is refused with each grammar's message.
  it('are refused everywhere an address is read', () => {
    expect(errorOf(() => parseSource('fe80::5%eth0/64'))).toBe('EGRESS_SOURCE unspecified or invalid');
    expect(errorOf(() => parseRedirectDestinations('80 tcp fe80::1%macvlan0', 6))).toBe("EGRESS_DESTINATION value '80 tcp fe80::1%macvlan0' is invalid");
    expect(errorOf(() => parseHttpProxyDestinations('fe80::1%eth0'))).toBe("Bad destination 'fe80::1%eth0'");
    expect(errorOf(() => parseDnsProxyDestinations('53 fe80::1%eth0'))).toBe("Bad destination '53 fe80::1%eth0'");
  });
  it('link-local addresses without a zone are still accepted', () => {
    expect(parseSource('fe80::5/64')).toEqual({ address: 'fe80::5', family: 6, prefix: 64 });
  });
});
