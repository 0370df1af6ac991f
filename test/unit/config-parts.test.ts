/**
 * One pure function per part from environment to typed configuration
 * (config/router.ts, http-proxy-options.ts, dns-proxy-options.ts), one
 * integer parser, and the flags of `http-proxy` as variables.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseInteger, parseSeconds } from '../../src/config/int.js';
import { routerConfig } from '../../src/config/router.js';
import { httpProxyConfig, HTTP_PROXY_FLAGS, HTTP_PROXY_VARS } from '../../src/config/http-proxy-options.js';
import { dnsProxyConfig } from '../../src/config/dns-proxy-options.js';
import { errorOf } from './config-error.js';

const dir = mkdtempSync(join(tmpdir(), 'erut-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MISSING = join(dir, 'missing');
const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };

describe('parseInteger / parseSeconds', () => {
  it.each([['0', 0, 9, false, 0], ['9', 0, 9, false, 9], ['10', 0, 9, false, undefined], ['0x10', 0, 99, true, 16], ['0x10', 0, 99, false, undefined],
    ['', 0, 9, false, undefined], ['-1', -5, 9, false, undefined], ['1.5', 0, 9, false, undefined], [' 1', 0, 9, false, undefined], ['1e3', 0, 9999, false, undefined]] as const)(
    '%j in [%d, %d] hex=%s -> %s', (t, min, max, hex, n) => {
      expect(parseInteger(t, min, max, hex)).toBe(n);
    });
  it('seconds allow fractions, nothing else', () => {
    expect(parseSeconds('0.5', 0.1)).toBe(0.5);
    expect(parseSeconds('2', 1)).toBe(2);
    expect(parseSeconds('0', 1)).toBeUndefined();
    expect(parseSeconds('1e3', 1)).toBeUndefined();
    expect(parseSeconds('.5', 0)).toBeUndefined();
  });
});

describe('routerConfig', () => {
  it('reads EGRESS_DESTINATION(_FILE) in redirect modes only, and never the proxies\' files', () => {
    const env = { ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25', EGRESS_HTTP_PROXY_DESTINATION_FILE: MISSING, EGRESS_DNS_PROXY_DESTINATION_FILE: MISSING };
    expect(routerConfig(env)).toMatchObject({ mode: 'legacy', debug: false, destinationText: '80 tcp 203.0.113.25', redirect: { gateway: '192.168.12.1' } });
    expect(routerConfig({ ...V4, EGRESS_ROUTER_MODE: 'dns-proxy', EGRESS_DESTINATION_FILE: MISSING })).toMatchObject({ mode: 'dns-proxy', redirect: undefined });
  });
  it('names the destination file legacy mode follows, with the text set-up applies', () => {
    const file = join(dir, 'dest');
    writeFileSync(file, '80 tcp 203.0.113.25\n');
    expect(routerConfig({ ...V4, EGRESS_DESTINATION_FILE: file })).toMatchObject({ destinationFile: file, destinationText: '80 tcp 203.0.113.25\n' });
    expect(routerConfig({ ...V4, EGRESS_DESTINATION: '203.0.113.1' }).destinationFile).toBeUndefined();
  });
  it('checks the source before reading the destination file, as the image does', () => {
    expect(errorOf(() => routerConfig({ EGRESS_DESTINATION_FILE: MISSING }))).toBe('EGRESS_SOURCE unspecified or invalid');
  });
});

describe('httpProxyConfig', () => {
  const RULES = { EGRESS_HTTP_PROXY_DESTINATION: 'example.com' };
  it('defaults', () => {
    expect(httpProxyConfig(RULES)).toMatchObject({ placement: 'pod', localAddress: undefined, listen: '0.0.0.0', port: 8080, limits: {}, clients: undefined, connectPorts: undefined, debug: false });
  });
  it('every flag has a variable, listed in the help table', () => {
    for (const [, name] of Object.values(HTTP_PROXY_FLAGS)) expect(Object.keys(HTTP_PROXY_VARS)).toContain(name);
    expect(httpProxyConfig({
      ...RULES, EGRESS_HTTP_PROXY_LISTEN: '127.0.0.1', EGRESS_HTTP_PROXY_PORT: '0', EGRESS_HTTP_PROXY_MAX_CONNECTIONS: '10', EGRESS_HTTP_PROXY_MAX_HEADER_SIZE: '2048',
      EGRESS_HTTP_PROXY_HEADER_TIMEOUT: '1000', EGRESS_HTTP_PROXY_IDLE_TIMEOUT: '2000', EGRESS_HTTP_PROXY_KEEPALIVE_TIMEOUT: '3000', EGRESS_HTTP_PROXY_CONNECT_TIMEOUT: '4000',
      EGRESS_HTTP_PROXY_CLIENTS: '10.0.0.0/8,::1', EGRESS_HTTP_PROXY_CONNECT_PORTS: '443 8443', EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: '192.168.12.99/24',
    })).toMatchObject({
      listen: '127.0.0.1', port: 0, localAddress: '192.168.12.99', connectPorts: [443, 8443],
      clients: [{ address: '10.0.0.0', family: 4, prefix: 8 }, { address: '::1', family: 6, prefix: 128 }],
      limits: { maxConnections: 10, maxHeaderBytes: 2048, headersTimeoutMs: 1000, idleTimeoutMs: 2000, keepAliveTimeoutMs: 3000, connectTimeoutMs: 4000 },
    });
  });
  it('a bad value names the flag it came from, else the variable', () => {
    expect(errorOf(() => httpProxyConfig({ ...RULES, EGRESS_HTTP_PROXY_PORT: 'x' }, { EGRESS_HTTP_PROXY_PORT: '--port' }))).toBe("--port 'x' is invalid, must be a number from 0 to 65535");
    expect(errorOf(() => httpProxyConfig({ ...RULES, EGRESS_HTTP_PROXY_PORT: '65536' }))).toBe("EGRESS_HTTP_PROXY_PORT '65536' is invalid, must be a number from 0 to 65535");
    expect(errorOf(() => httpProxyConfig({ ...RULES, EGRESS_HTTP_PROXY_IDLE_TIMEOUT: '0' }, { EGRESS_HTTP_PROXY_IDLE_TIMEOUT: '--idle-timeout' })))
      .toBe("--idle-timeout '0' is invalid, must be a number from 1 to 2147483647");
    expect(errorOf(() => httpProxyConfig({ ...RULES, EGRESS_HTTP_PROXY_LISTEN: 'a b' }))).toBe("EGRESS_HTTP_PROXY_LISTEN 'a b' is not an IP address or host name");
  });
  it('reads only its own destination file', () => {
    expect(httpProxyConfig({ ...RULES, EGRESS_DESTINATION_FILE: MISSING, EGRESS_DNS_PROXY_DESTINATION_FILE: MISSING }).policy.rules).toHaveLength(1);
  });
});

describe('dnsProxyConfig', () => {
  const FWD = { EGRESS_DNS_PROXY_DESTINATION: '80 203.0.113.25' };
  it('validates placement and, in host placement, EGRESS_SOURCE (the bind address)', () => {
    expect(errorOf(() => dnsProxyConfig({ ...FWD, EGRESS_PLACEMENT: 'vm' }))).toBe("EGRESS_PLACEMENT 'vm' is invalid, must be 'pod' or 'host'");
    expect(errorOf(() => dnsProxyConfig({ ...FWD, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: 'not-an-ip' })))
      .toBe("EGRESS_SOURCE 'not-an-ip' is not an IP address (host placement binds outbound sockets to it)");
    expect(dnsProxyConfig({ ...FWD, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: '192.168.12.99/24' }).options.bindSource).toBe('192.168.12.99');
    expect(dnsProxyConfig({ ...FWD, EGRESS_SOURCE: 'unused in a pod' }).options.bindSource).toBeUndefined();
  });
  it('the destinations are checked first, as the image does', () => {
    expect(errorOf(() => dnsProxyConfig({ EGRESS_PLACEMENT: 'vm' }))).toBe('Must specify EGRESS_DNS_PROXY_DESTINATION');
  });
  it('a connection count is an integer', () => {
    expect(errorOf(() => dnsProxyConfig({ ...FWD, EGRESS_DNS_PROXY_MAX_CONNECTIONS: '1.5' }))).toBe("EGRESS_DNS_PROXY_MAX_CONNECTIONS '1.5' is invalid, must be a number >= 1");
  });
});
