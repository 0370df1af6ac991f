/**
 * The compiled binary as operators run it: a child process with a controlled
 * environment (only PATH plus the variables under test), so nothing from the
 * developer's shell leaks in. Exit code, stdout and stderr are asserted exactly:
 * alerts key on the one error line and scripts parse `render`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRedirectConfig } from '../../src/config/redirect.js';
import { parseOptions } from '../../src/config/options.js';
import { HTTP_PROXY_VARS } from '../../src/config/http-proxy-options.js';
import { DNS_PROXY_VARS } from '../../src/config/dns-proxy-options.js';
import { SERVICE_VARS } from '../../src/config/service.js';
import { FIREWALL_VARS } from '../../src/config/firewall.js';
import { redirectTable } from '../../src/plan/redirect.js';
import { toReplaceBatch, toText } from '../../src/plan/nft.js';
import { BIN, ensureBuilt } from './dist.js';

interface Run { code: number | null; stdout: string; stderr: string }
function run(args: string[], vars: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, ...vars }, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const V4 = { EGRESS_SOURCE: '192.168.12.99/24', EGRESS_GATEWAY: '192.168.12.1' };
const DEST = '80 tcp 203.0.113.25\n8080 tcp 203.0.113.26 80\n203.0.113.28';
const expectedText = (env: Record<string, string>) => toText(redirectTable({ config: parseRedirectConfig(env), options: parseOptions(env) }));

let dir: string;
beforeAll(async () => {
  // The binary launches dist/: build it from the current sources first.
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), 'erut-cli-'));
}, 120_000);
afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

describe('render', () => {
  it('prints the nft ruleset for the environment, exactly', () => {
    const r = run(['render'], { ...V4, EGRESS_DESTINATION: DEST });
    expect(r).toEqual({ code: 0, stderr: '', stdout: `table ip egress_router {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "eth0" tcp dport 80 counter dnat to 203.0.113.25:80
		iifname "eth0" tcp dport 8080 counter dnat to 203.0.113.26:80
		iifname "eth0" counter dnat to 203.0.113.28 comment "fallback"
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "macvlan0" counter snat to 192.168.12.99
	}
}
` });
  });
  it('--json prints the libnftables batch, pretty-printed, one trailing newline', () => {
    const env = { ...V4, EGRESS_DESTINATION: DEST };
    const r = run(['render', '--json'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const batch = toReplaceBatch(redirectTable({ config: parseRedirectConfig(env), options: parseOptions(env) }));
    expect(r.stdout).toBe(JSON.stringify(batch, null, 2) + '\n');
  });
  it('reads EGRESS_DESTINATION_FILE (CRLF, comments) in preference to the variable', () => {
    const file = join(dir, 'dest');
    writeFileSync(file, '# mounted ConfigMap\r\n80 tcp 203.0.113.25\r\n');
    const r = run(['render'], { ...V4, EGRESS_DESTINATION: '203.0.113.99', EGRESS_DESTINATION_FILE: file });
    expect(r.stdout).toBe(expectedText({ ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25' }));
  });
  it('host placement and IPv6 follow the environment', () => {
    const env = { EGRESS_SOURCE: '2001:db8:1::99/64', EGRESS_GATEWAY: '2001:db8:1::1', EGRESS_DESTINATION: '80 tcp 2001:db8:2::25 8080', EGRESS_PLACEMENT: 'host' };
    const r = run(['render'], env);
    expect(r.stdout).toBe(expectedText(env));
    expect(r.stdout).toContain('iifname "eth0" fib daddr type local tcp dport 80 ct mark set 0x000000e6 counter dnat to [2001:db8:2::25]:8080');
  });
  it('bad input: exit 1, the one error line on stderr, nothing on stdout', () => {
    expect(run(['render'], { ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25\n80 tcp 203.0.113.26' })).toEqual({
      code: 1, stdout: '', stderr: 'EGRESS_DESTINATION localport 80 is already used, must be unique for each destination\n',
    });
  });
});

describe('EGRESS_ROUTER_MODE', () => {
  it('unit-test prints the same as render and touches nothing', () => {
    const env = { ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25' };
    const r = run([], { ...env, EGRESS_ROUTER_MODE: 'unit-test' });
    expect(r).toEqual({ code: 0, stderr: '', stdout: run(['render'], env).stdout });
    expect(r.stdout).toBe(expectedText(env));
  });
  it("an unknown mode: Unrecognized EGRESS_ROUTER_MODE 'x'", () => {
    expect(run([], { ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_MODE: 'x' })).toEqual({ code: 1, stdout: '', stderr: "Unrecognized EGRESS_ROUTER_MODE 'x'\n" });
    expect(run(['check'], { ...V4, EGRESS_DESTINATION: DEST, EGRESS_ROUTER_MODE: 'x' })).toEqual({ code: 1, stdout: '', stderr: "Unrecognized EGRESS_ROUTER_MODE 'x'\n" });
  });
});

describe('check', () => {
  it('router: exit 0 and a summary of mappings, fallback, ruleset and network', () => {
    const r = run(['check'], { ...V4, EGRESS_DESTINATION: DEST });
    expect(r).toEqual({ code: 0, stderr: '', stdout: [
      'router: configuration OK (mode legacy, placement pod)',
      'egress source 192.168.12.99/24 on macvlan0, gateway 192.168.12.1',
      '  tcp port 80 -> 203.0.113.25:80',
      '  tcp port 8080 -> 203.0.113.26:80',
      '  every other port -> 203.0.113.28',
      'nftables: table ip egress_router, 4 rules',
      'network:',
      '  ensure link macvlan0 (must exist)',
      '  sysctl net.ipv4.conf.macvlan0.arp_notify=1  # gratuitous ARP when the address comes up',
      '  address 192.168.12.99/24 on macvlan0',
      '  link macvlan0 up',
      '  route default via 192.168.12.1 dev macvlan0',
      '  sysctl net.ipv4.conf.all.forwarding=1  # forward DNATed flows (the pod namespace is ours)',
      '  gratuitous ARP for 192.168.12.99 on macvlan0, again after 2 s',
      '',
    ].join('\n') });
  });
  it('router without fallback says unmapped ports are refused; `check router` is the default part', () => {
    const env = { ...V4, EGRESS_DESTINATION: '53 udp 203.0.113.53' };
    const r = run(['check', 'router'], env);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').slice(2, 5)).toEqual(['  udp port 53 -> 203.0.113.53:53', '  every other port: refused', 'nftables: table ip egress_router, 5 rules']);
    expect(run(['check'], env).stdout).toBe(r.stdout);
  });
  it('router in http-proxy mode does not read EGRESS_DESTINATION', () => {
    const r = run(['check'], { ...V4, EGRESS_ROUTER_MODE: 'http-proxy', EGRESS_DESTINATION: 'garbage' });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').slice(0, 3)).toEqual([
      'router: configuration OK (mode http-proxy, placement pod)', 'egress source 192.168.12.99/24 on macvlan0, gateway 192.168.12.1', 'network:']);
  });
  it.each([
    [{}, 'EGRESS_SOURCE unspecified or invalid'],
    [{ EGRESS_SOURCE: '192.168.12.99' }, 'EGRESS_GATEWAY unspecified or invalid'],
    [V4, 'EGRESS_DESTINATION unspecified'],
    [{ ...V4, EGRESS_DESTINATION: '80 tcp nowhere' }, "EGRESS_DESTINATION value '80 tcp nowhere' is invalid"],
    [{ ...V4, EGRESS_DESTINATION: '203.0.113.28\n80 tcp 203.0.113.25' }, 'EGRESS_DESTINATION fallback IP must be the last line'],
    [{ ...V4, EGRESS_DESTINATION: '80 tcp 203.0.113.25 65536' }, 'Invalid port: 65536, must be in the range 1 to 65535'],
    [{ ...V4, EGRESS_DESTINATION: DEST, EGRESS_PLACEMENT: 'vm' }, "EGRESS_PLACEMENT 'vm' is invalid, must be 'pod' or 'host'"],
    [{ ...V4, EGRESS_DESTINATION_FILE: '/nonexistent/erut' }, "EGRESS_DESTINATION_FILE '/nonexistent/erut' cannot be read: ENOENT"],
  ])('router error %j: exit 1, exact line on stderr, stdout empty', (env, msg) => {
    expect(run(['check'], env)).toEqual({ code: 1, stdout: '', stderr: msg + '\n' });
  });
  it('http-proxy: summary of the policy in order', () => {
    // EGRESS_FASTPATH=0: the carrier line does not depend on whether the addon is built here.
    expect(run(['check', 'http-proxy'], { EGRESS_HTTP_PROXY_DESTINATION: '!*.example.com\n10.0.0.0/8\n*', EGRESS_FASTPATH: '0' })).toEqual({ code: 0, stderr: '', stdout:
      'http-proxy: configuration OK\npolicy (2 rules, first match wins):\n  1. deny example.com and its subdomains\n  2. allow 10.0.0.0/8\n  3. allow everything else (*)\nconnections: node sockets (EGRESS_FASTPATH=0)\n' });
  });
  it.each([
    [{}, 'No EGRESS_HTTP_PROXY_DESTINATION specified'],
    [{ EGRESS_HTTP_PROXY_DESTINATION: '*\nexample.com' }, 'Wildcard must be last rule, if present'],
    [{ EGRESS_HTTP_PROXY_DESTINATION: 'example.com\nhttp://x' }, "Bad destination 'http://x'"],
  ])('http-proxy error %j', (env, msg) => {
    expect(run(['check', 'http-proxy'], env)).toEqual({ code: 1, stdout: '', stderr: msg + '\n' });
  });
  it('dns-proxy: one line per TCP listener, from EGRESS_DNS_PROXY_DESTINATION_FILE too', () => {
    const file = join(dir, 'dns');
    writeFileSync(file, '80 1.2.3.4\r\n8443 example.com 443\r\n');
    expect(run(['check', 'dns-proxy'], { EGRESS_DNS_PROXY_DESTINATION_FILE: file, EGRESS_FASTPATH: '0' })).toEqual({ code: 0, stderr: '', stdout:
      'dns-proxy: configuration OK\n2 TCP listener(s):\n  port 80 -> 1.2.3.4:80\n  port 8443 -> example.com:443\nuser-space relay: node sockets (EGRESS_FASTPATH=0)\n' });
  });
  it.each([
    [{}, 'Must specify EGRESS_DNS_PROXY_DESTINATION'],
    [{ EGRESS_DNS_PROXY_DESTINATION: '80' }, "Bad destination '80'"],
    [{ EGRESS_DNS_PROXY_DESTINATION: '0 example.com' }, 'Invalid port: 0, must be in the range 1 to 65535'],
    [{ EGRESS_DNS_PROXY_DESTINATION: '80 a.example\n80 b.example' }, 'Proxy port 80 already used, must be unique for each destination'],
  ])('dns-proxy error %j', (env, msg) => {
    expect(run(['check', 'dns-proxy'], env)).toEqual({ code: 1, stdout: '', stderr: msg + '\n' });
  });
  it('an unknown part is one line and exit 1', () => {
    expect(run(['check', 'bogus'], V4)).toEqual({ code: 1, stdout: '', stderr: "Unknown part 'bogus', must be router, http-proxy, dns-proxy, firewall or daemon\n" });
  });
});

describe('--help lists the environment variables each command reads', () => {
  const ROUTER = ['EGRESS_ROUTER_MODE', 'EGRESS_SOURCE', 'EGRESS_GATEWAY', 'EGRESS_DESTINATION', 'EGRESS_DESTINATION_FILE', 'EGRESS_ROUTER_DEBUG',
    'EGRESS_PLACEMENT', 'EGRESS_CLIENT_INTERFACE', 'EGRESS_MACVLAN_MASTER', 'EGRESS_MACVLAN_MODE', 'EGRESS_MACVLAN_NETNS', 'EGRESS_NFT_TABLE',
    'EGRESS_ROUTE_TABLE', 'EGRESS_FWMARK'];
  /** The variable names in the "Environment variables:" section, in order. */
  const listed = (help: string) => help.split('\nEnvironment variables:\n')[1]!.trim().split('\n').map((l) => l.trim().split(/\s+/)[0]);
  // Long-running commands also read the runner's variables (config/service.ts).
  const SERVICE = Object.keys(SERVICE_VARS);
  it.each([['run', [...ROUTER, ...SERVICE]], ['render', ROUTER]])('%s --help', (cmd, vars) => {
    const r = run([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: egress-router ${cmd}`);
    expect(listed(r.stdout)).toEqual(vars);
    expect(r.stdout).toMatch(/\n  EGRESS_SOURCE +the egress IP, IP or IP\/len, put on macvlan0\n/);
  });
  it.each([['http-proxy', HTTP_PROXY_VARS], ['dns-proxy', DNS_PROXY_VARS]])('%s --help lists its part\'s table from config/', (cmd, vars) => {
    const r = run([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(listed(r.stdout)).toEqual([...Object.keys(vars), ...SERVICE]);
  });
  it('daemon --help lists every part it may run', () => {
    const r = run(['daemon', '--help']);
    expect(r.code).toBe(0);
    expect(listed(r.stdout)).toEqual([...new Set([...ROUTER, ...SERVICE, ...Object.keys(HTTP_PROXY_VARS), ...Object.keys(DNS_PROXY_VARS), ...Object.keys(FIREWALL_VARS)])]);
  });
  it('check --help also lists the proxy variables', () => {
    const r = run(['check', '--help']);
    expect(r.code).toBe(0);
    expect(listed(r.stdout)).toEqual([...ROUTER, 'EGRESS_HTTP_PROXY_DESTINATION', 'EGRESS_HTTP_PROXY_DESTINATION_FILE', 'EGRESS_DNS_PROXY_DESTINATION', 'EGRESS_DNS_PROXY_DESTINATION_FILE', ...SERVICE]);
  });
});
