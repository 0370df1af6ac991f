/**
 * `check <part>` and starting that part reach the same verdict: for each
 * part, a table of bad environments where both exit 1 with the same one line
 * on stderr. And each part reads only its own variables and files.
 *
 * A start that wrongly passed validation would go on to set up the network
 * or listen: as root each start runs in a fresh, empty network namespace of
 * its own (unshare -n), so even then it touches nothing of the machine's.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, ensureBuilt } from './dist.js';

interface Run { code: number | null; stdout: string; stderr: string }
const ISOLATE = process.getuid?.() === 0 ? ['unshare', '-n', '--'] : [];
function run(args: string[], vars: Record<string, string>, isolate = false): Run {
  const argv = [...(isolate ? ISOLATE : []), process.execPath, BIN, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH, ...vars }, encoding: 'utf8', timeout: 8_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => { await ensureBuilt(); }, 120_000);

const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const DEST = '80 tcp 203.0.113.25';
const HTTP = { EGRESS_HTTP_PROXY_DESTINATION: 'example.com' };
const DNS = { EGRESS_DNS_PROXY_DESTINATION: '18080 127.0.0.1' };
const MISSING = '/nonexistent/erut-parity';
// A process in which the native fast path's addon cannot be loaded (as in a build without it).
const NO_ADDON = { NODE_OPTIONS: `--require ${new URL('./no-fastpath.cjs', import.meta.url).pathname}` };
const NOT_BUILT = "EGRESS_FASTPATH=1 but the native fast path is not built: Cannot find module 'egress-router-fastpath'";

/** check's verdict, then start's: both exit 1 with the same line. */
function parity(part: string, start: string[], env: Record<string, string>, line: string) {
  const check = run(['check', part], env);
  expect(check).toEqual({ code: 1, stdout: '', stderr: line + '\n' });
  const started = run(start, env, true);
  expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 1, stderr: line + '\n' });
}

describe('check router == run', () => {
  it.each([
    [{}, 'EGRESS_SOURCE unspecified or invalid'],
    [{ ...V4, EGRESS_SOURCE: 'not-an-ip' }, 'EGRESS_SOURCE unspecified or invalid'],
    [{ EGRESS_SOURCE: '192.168.12.99' }, 'EGRESS_GATEWAY unspecified or invalid'],
    [V4, 'EGRESS_DESTINATION unspecified'],
    [{ ...V4, EGRESS_DESTINATION: 'abc tcp 203.0.113.25' }, "EGRESS_DESTINATION value 'abc tcp 203.0.113.25' is invalid"],
    [{ ...V4, EGRESS_DESTINATION_FILE: MISSING }, `EGRESS_DESTINATION_FILE '${MISSING}' cannot be read: ENOENT`],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_PLACEMENT: 'vm' }, "EGRESS_PLACEMENT 'vm' is invalid, must be 'pod' or 'host'"],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTE_TABLE: '254' }, "EGRESS_ROUTE_TABLE '254' is invalid"],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_MACVLAN_MODE: 'source' }, "EGRESS_MACVLAN_MODE 'source' is invalid"],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_MODE: 'x' }, "Unrecognized EGRESS_ROUTER_MODE 'x'"],
    [{ ...V4, EGRESS_ROUTER_MODE: 'http-proxy', EGRESS_NFT_TABLE: 'a-b' }, "EGRESS_NFT_TABLE 'a-b' is invalid"],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_METRICS_ADDRESS: '9464' }, "EGRESS_ROUTER_METRICS_ADDRESS '9464' is invalid, must be host:port (IPv6 in brackets)"],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_DRAIN_SECONDS: 'soon' }, "EGRESS_ROUTER_DRAIN_SECONDS 'soon' is invalid, must be a number of seconds >= 0"],
  ])('%j -> %s', (env, line) => parity('router', [], env, line));
});

describe('check daemon == daemon', () => {
  it.each([
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_MODE: 'init' }, "EGRESS_ROUTER_MODE 'init' does not run a daemon: use 'egress-router run' (the image entrypoint)"],
    [{ ...V4, EGRESS_ROUTER_MODE: 'http-proxy' }, 'No EGRESS_HTTP_PROXY_DESTINATION specified'],
    [{ ...V4, EGRESS_ROUTER_MODE: 'dns-proxy', EGRESS_DNS_PROXY_DESTINATION: '0 example.com' }, 'Invalid port: 0, must be in the range 1 to 65535'],
    [{ ...V4, ...DNS, ...NO_ADDON, EGRESS_ROUTER_MODE: 'dns-proxy', EGRESS_FASTPATH: '1' }, NOT_BUILT],
    [{ ...V4, ...HTTP, EGRESS_ROUTER_MODE: 'http-proxy', EGRESS_ROUTER_METRICS_ADDRESS: '[10.0.0.1]:80' }, "EGRESS_ROUTER_METRICS_ADDRESS '[10.0.0.1]:80' is invalid, must be host:port (IPv6 in brackets)"],
    [{ ...V4, EGRESS_DESTINATION: 'x' }, "EGRESS_DESTINATION value 'x' is invalid"],
    [{ ...V4, ...HTTP, EGRESS_ROUTER_MODE: 'http-proxy', EGRESS_FASTPATH: '1', ...NO_ADDON }, NOT_BUILT],
  ])('%j -> %s', (env, line) => parity('daemon', ['daemon'], env, line));
});

describe('check http-proxy == http-proxy', () => {
  it.each([
    [{}, 'No EGRESS_HTTP_PROXY_DESTINATION specified'],
    [{ EGRESS_HTTP_PROXY_DESTINATION_FILE: MISSING }, `EGRESS_HTTP_PROXY_DESTINATION_FILE '${MISSING}' cannot be read: ENOENT`],
    [{ ...HTTP, EGRESS_PLACEMENT: 'vm' }, "EGRESS_PLACEMENT 'vm' is invalid, must be 'pod' or 'host'"],
    [{ ...HTTP, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: 'not-an-ip' }, "EGRESS_SOURCE 'not-an-ip' is not an IP address (host placement binds outbound sockets to it)"],
    [{ ...HTTP, EGRESS_PLACEMENT: 'host' }, "EGRESS_SOURCE '' is not an IP address (host placement binds outbound sockets to it)"],
    [{ ...HTTP, EGRESS_HTTP_PROXY_CLIENTS: '10.0.0.0/8 nowhere' }, "Bad client address 'nowhere'"],
    [{ ...HTTP, EGRESS_HTTP_PROXY_CONNECT_PORTS: '443 0' }, "CONNECT port '0' is invalid, must be a number from 1 to 65535"],
    [{ ...HTTP, EGRESS_HTTP_PROXY_PORT: 'x' }, "EGRESS_HTTP_PROXY_PORT 'x' is invalid, must be a number from 0 to 65535"],
    [{ ...HTTP, EGRESS_ROUTER_METRICS_ADDRESS: 'localhost:99999' }, "EGRESS_ROUTER_METRICS_ADDRESS 'localhost:99999' is invalid, must be host:port (IPv6 in brackets)"],
    [{ ...HTTP, EGRESS_FASTPATH: 'yes' }, "EGRESS_FASTPATH 'yes' is invalid, must be 'auto', '1' or '0'"],
    [{ ...HTTP, EGRESS_FASTPATH: '1', ...NO_ADDON }, NOT_BUILT],
  ])('%j -> %s', (env, line) => parity('http-proxy', ['http-proxy'], env, line));

  it('without the addon, the default (auto) and EGRESS_FASTPATH=0 pass; with it, EGRESS_FASTPATH=1 passes', () => {
    // The verdict names the carrier the start will use.
    expect(run(['check', 'http-proxy'], { ...HTTP, ...NO_ADDON })).toMatchObject({ code: 0, stdout: expect.stringContaining("connections: node sockets (native fast path not built: Cannot find module 'egress-router-fastpath')\n") });
    expect(run(['check', 'http-proxy'], { ...HTTP, EGRESS_FASTPATH: '0', ...NO_ADDON })).toMatchObject({ code: 0, stdout: expect.stringContaining('connections: node sockets (EGRESS_FASTPATH=0)\n') });
    expect(run(['check', 'http-proxy'], { ...HTTP, EGRESS_FASTPATH: '1' })).toMatchObject({ code: 0, stdout: expect.stringContaining('connections: native fast path\n') });
  });
});

describe('check dns-proxy == dns-proxy', () => {
  it.each([
    [{}, 'Must specify EGRESS_DNS_PROXY_DESTINATION'],
    [{ EGRESS_DNS_PROXY_DESTINATION: 'abc example.com' }, "Bad destination 'abc example.com'"],
    [{ EGRESS_DNS_PROXY_DESTINATION_FILE: MISSING }, `EGRESS_DNS_PROXY_DESTINATION_FILE '${MISSING}' cannot be read: ENOENT`],
    [{ ...DNS, EGRESS_PLACEMENT: 'vm' }, "EGRESS_PLACEMENT 'vm' is invalid, must be 'pod' or 'host'"],
    [{ ...DNS, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: 'not-an-ip' }, "EGRESS_SOURCE 'not-an-ip' is not an IP address (host placement binds outbound sockets to it)"],
    [{ ...DNS, EGRESS_PLACEMENT: 'host' }, "EGRESS_SOURCE '' is not an IP address (host placement binds outbound sockets to it)"],
    [{ ...DNS, EGRESS_DNS_PROXY_MODE: 'ebpf' }, "EGRESS_DNS_PROXY_MODE 'ebpf' is invalid, must be 'auto', 'userspace' or 'kernel'"],
    [{ ...DNS, EGRESS_PLACEMENT: 'host', EGRESS_SOURCE: '10.0.0.2', EGRESS_DNS_PROXY_MODE: 'kernel' }, "EGRESS_DNS_PROXY_MODE 'kernel' needs EGRESS_PLACEMENT 'pod'"],
    [{ ...DNS, EGRESS_DNS_PROXY_TTL_MIN: '0' }, "EGRESS_DNS_PROXY_TTL_MIN '0' is invalid, must be a number >= 1"],
    [{ ...DNS, EGRESS_FASTPATH: 'yes' }, "EGRESS_FASTPATH 'yes' is invalid, must be 'auto', '1' or '0'"],
    [{ ...DNS, ...NO_ADDON, EGRESS_FASTPATH: '1' }, NOT_BUILT],
  ])('%j -> %s', (env, line) => parity('dns-proxy', ['dns-proxy'], env, line));
});

describe('flags are merged into the variables; messages name what was typed', () => {
  it('http-proxy --port x, --max-connections 0', () => {
    expect(run(['http-proxy', '--port', 'x'], HTTP, true)).toMatchObject({ code: 1, stderr: "--port 'x' is invalid, must be a number from 0 to 65535\n" });
    expect(run(['http-proxy', '--max-connections', '0'], HTTP, true)).toMatchObject({ code: 1, stderr: "--max-connections '0' is invalid, must be a number from 1 to 2147483647\n" });
    expect(run(['http-proxy', '--clients', 'x'], HTTP, true)).toMatchObject({ code: 1, stderr: "Bad client address 'x'\n" });
  });
  it('dns-proxy --mode', () => {
    expect(run(['dns-proxy', '--mode', 'ebpf'], DNS, true)).toMatchObject({ code: 1, stderr: "EGRESS_DNS_PROXY_MODE 'ebpf' is invalid, must be 'auto', 'userspace' or 'kernel'\n" });
  });
});

describe('each part reads only its own variables and files', () => {
  it('check (router) ignores the proxies\' files', () => {
    const env = { ...V4, EGRESS_DESTINATION: DEST, EGRESS_HTTP_PROXY_DESTINATION_FILE: MISSING, EGRESS_DNS_PROXY_DESTINATION_FILE: MISSING };
    const r = run(['check'], env);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('router: configuration OK (mode legacy, placement pod)');
  });
  it('check http-proxy ignores the other parts\' files', () => {
    const r = run(['check', 'http-proxy'], { ...HTTP, EGRESS_DESTINATION_FILE: MISSING, EGRESS_DNS_PROXY_DESTINATION_FILE: MISSING });
    expect(r.code).toBe(0);
  });
  it('check dns-proxy: EGRESS_FASTPATH=1 passes with the addon built; without it, auto passes (Node sockets)', () => {
    expect(run(['check', 'dns-proxy'], { ...DNS, EGRESS_FASTPATH: '1' })).toMatchObject({ code: 0, stdout: expect.stringContaining('user-space relay: native fast path\n') });
    expect(run(['check', 'dns-proxy'], { ...DNS, ...NO_ADDON })).toMatchObject({ code: 0, stdout: expect.stringContaining('user-space relay: node sockets (native fast path not built') });
    // The kernel path has no user-space relay to name.
    expect(run(['check', 'dns-proxy'], { ...DNS, EGRESS_DNS_PROXY_MODE: 'kernel' }).stdout).not.toContain('user-space relay');
  });
  it('check dns-proxy ignores the other parts\' files and, in pod placement, EGRESS_SOURCE', () => {
    const r = run(['check', 'dns-proxy'], { ...DNS, EGRESS_DESTINATION_FILE: MISSING, EGRESS_HTTP_PROXY_DESTINATION_FILE: MISSING, EGRESS_SOURCE: 'x' });
    expect(r.code).toBe(0);
  });
});
