/**
 * The egress firewall (issue 10) in the lab, black-box: the firewall runs in
 * the node's namespace, which routes the pod network (client 10.128.0.20, the
 * policy's source; pod 10.128.0.10, outside it) out of eth0 toward the
 * internet namespace. Verdicts are asserted from the client's side (an answer,
 * or the kind of refusal) and in the servers' own words (who answered, which
 * source it saw). One lab (its set-up is most of the cost), phases in order,
 * which is why this file is longer than most:
 *   1. `--once`: an IPv6 policy, an invalid one, two in a namespace, per-policy
 *      sources, then the documentation's policy (each start replaces the last);
 *   2. the daemon on a ConfigMap folder: DNS changes, a new name, policy changes
 *      with established flows, an invalid change, a failed refresh, the reversed
 *      policy, SIGTERM, `--remove`; foreign tables compared at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, ADDR, ADDR6, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer, type Zone } from '../lab/dns.js';
import {
  addExternal, allow, ConfigMapDir, deny, dnsLookup, hold, listTable, logLines, policyYaml, probe, routeThroughNode,
  PROBE, sees, SERVERS, until, type ProbeResult,
} from '../lab/firewall.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const [A6, B6] = ADDR6.inet as unknown as [string, string];
const C6 = '2001:db8:113::12';
const DOC_NET = '1.2.3.4'; // in the documentation's 1.2.3.0/24
const SERVICE = '172.30.0.10'; // a cluster CIDR destination beyond eth0
const LATER = ADDR.fallback; // later.foo.com, once it exists
const CLIENT = ADDR.client;
const TABLE = 'egress_router_firewall';
const ZONE: Zone = {
  'www.foo.com': { A: [B], ttl: 2 },
  'big.foo.com': { A: [C], ttl: 2, truncate: true },
  'v6.foo.com': { AAAA: [B6], ttl: 2 },
};
const DOC = [allow('1.2.3.0/24'), allow('www.foo.com'), deny('0.0.0.0/0')];
const FLAGS = ['--sources', `${CLIENT}/32,${ADDR6.client}/128`, '--interface', 'eth0', '--cluster-cidrs', '10.128.0.0/14,172.30.0.0/16'];
// Written as `nft list` prints them, so the text read back is comparable.
const FOREIGN = `table ip foreign_nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 198.51.100.0/24 masquerade
	}
}
table inet foreign_filter {
	set blocked {
		type ipv4_addr
		elements = { 198.51.100.7 }
	}

	chain screen {
		type filter hook forward priority filter + 10; policy accept;
		ip daddr @blocked drop
	}
}
table inet egress_router {
	chain keep {
		comment "the redirect engine's table name, not the firewall's"
	}
}
`;

/** A refusal the client sees at once: TCP reset or ICMP admin prohibited, never a timeout. */
const REFUSED = /^(ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|EACCES|EPERM)$/;
const expectRefused = (r: ProbeResult) => { expect(r.ok, JSON.stringify(r)).toBe(false); expect(r.err).toMatch(REFUSED); };
const expectServed = (r: ProbeResult, server: string, port: number, client: string = CLIENT) =>
  expect(r.line, JSON.stringify(r)).toMatch(sees(server, port, client));

describe('egress firewall', () => {
  let lab: Lab;
  let dns: DnsServer;
  let foreign: string[];
  const tcp = (host: string, port = 80, from: 'client' | 'pod' | 'node' = 'client') => probe(lab, from, 'tcp', host, port);
  const udp = (host: string, port = 5000) => probe(lab, 'client', 'udp', host, port);
  const once = (policyFile: string, extra: string[] = []) =>
    lab.exec('node', [process.execPath, BIN, '--log-format', 'json', 'firewall', '--once', '--policy', policyFile, ...FLAGS, ...extra], { timeoutMs: 20_000 });
  const listForeign = () => Promise.all([listTable(lab, 'ip', 'foreign_nat'), listTable(lab, 'inet', 'foreign_filter'), listTable(lab, 'inet', 'egress_router')]);

  beforeAll(async () => {
    await ensureBuilt();
    lab = await createLab({ ipv6: true, macvlanInPod: false });
    await routeThroughNode(lab, true);
    await addExternal(lab, DOC_NET, '1.2.3.0/24');
    await addExternal(lab, SERVICE, '172.30.0.0/16');
    const c6 = await lab.exec('inet', ['ip', 'addr', 'add', `${C6}/64`, 'dev', 'eth0', 'nodad']);
    expect(c6.code, c6.stderr).toBe(0);
    await lab.startServers({
      tcp: [A, B, C, LATER, DOC_NET, SERVICE].map((h) => `${h}:80`).concat([A6, B6, C6].map((h) => `[${h}]:80`)),
      udp: [`${A}:5000`, `${B}:5000`, `${DOC_NET}:5000`, `[${B6}]:5000`, `[${C6}]:5000`],
      echo: [`${DOC_NET}:7000`, `${B}:7000`, `${C}:7000`],
    });
    await lab.spawnReady('node', [process.execPath, SERVERS, '--tcp', `${ADDR.node}:80`], 'ready');
    await lab.spawnReady('inet', [process.execPath, PROBE, 'tickserve', DOC_NET, '7100'], 'ready');
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
    lab.writeResolvConf('node', ADDR.dns);
    const f = await lab.exec('node', ['nft', '-f', '-'], { input: FOREIGN });
    expect(f.code, f.stderr).toBe(0);
    foreign = await listForeign();
    expect(foreign.join('')).toBe(FOREIGN);
    // Without a firewall the client reaches everything through the node, from its own address.
    expectServed(await tcp(A), A, 80);
    expectServed(await probe(lab, 'client', 'tcp', A6, 80), A6, 80, ADDR6.client);
    expectServed(await udp(A), A, 5000);
  });
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
  });

  describe('--once', () => {
    const dir = new ConfigMapDir({
      'v6.yaml': policyYaml([allow(`${A6}/128`), allow('v6.foo.com'), deny('::/0')]),
      'annotated.yaml': `${policyYaml([deny(`${A}/32`)])}---\n${policyYaml([deny(`${C}/32`)], 'default', 'project2', `${ADDR.pod}/32`)}`,
      'doc.yaml': policyYaml(DOC),
      'two.yaml': `${policyYaml(DOC)}---\n${policyYaml([allow('0.0.0.0/0')], 'second')}`,
      'bad.yaml': policyYaml([allow('1.2.3.0/24'), allow('www.foo.com'), deny('1.2.3.4/24')]),
    });
    afterAll(() => dir.remove());

    it('IPv6: an Allow /128 and a name\'s AAAA before Deny ::/0 let two addresses through and refuse the others (TCP and UDP)', async () => {
      const r = await once(`${dir.dir}/v6.yaml`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expectServed(await probe(lab, 'client', 'tcp', A6, 80), A6, 80, ADDR6.client);
      expectServed(await probe(lab, 'client', 'tcp', B6, 80), B6, 80, ADDR6.client);
      expectServed(await probe(lab, 'client', 'udp', B6, 5000), B6, 5000, ADDR6.client);
      expectRefused(await probe(lab, 'client', 'tcp', C6, 80));
      expectRefused(await probe(lab, 'client', 'udp', C6, 5000));
      // IPv4 is not in this policy.
      expectServed(await tcp(A), A, 80);
    });

    it('an invalid policy is refused with the validator\'s line and nothing changes', async () => {
      const before = (await listTable(lab, 'inet', TABLE)).replace(/counter packets \d+ bytes \d+/g, 'counter');
      const r = await once(`${dir.dir}/bad.yaml`);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toContain('spec.egress[2].to.cidrSelector: Invalid value: "1.2.3.4/24": CIDR network specification "1.2.3.4/24" is not in canonical form (should be 1.2.3.0/24 or 1.2.3.4/32?)');
      expect((await listTable(lab, 'inet', TABLE)).replace(/counter packets \d+ bytes \d+/g, 'counter')).toBe(before);
    });

    it('two non-empty policies in one namespace: its external traffic is dropped, with openshift-sdn\'s line', async () => {
      const r = await once(`${dir.dir}/two.yaml`);
      expect(r.stdout + r.stderr).toContain('multiple EgressNetworkPolicies in same network namespace (project1) is not allowed; dropping all traffic');
      // Dropped (as openshift-sdn does): no answer within the probe's bound.
      const p = await probe(lab, 'client', 'tcp', DOC_NET, 80, 1500);
      expect(p.ok, JSON.stringify(p)).toBe(false);
      expectServed(await tcp(A, 80, 'pod'), A, 80, ADDR.pod);
    });

    it('each policy applies to its own sources (annotation egress-router.io/sources, else EGRESS_FIREWALL_SOURCES)', async () => {
      const r = await once(`${dir.dir}/annotated.yaml`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expectRefused(await tcp(A));
      expectServed(await tcp(C), C, 80);
      expectRefused(await tcp(C, 80, 'pod'));
      expectServed(await tcp(A, 80, 'pod'), A, 80, ADDR.pod);
    });

    it("the documentation's policy: 1.2.3.0/24 and www.foo.com allowed, every other external address refused (TCP)", async () => {
      const r = await once(`${dir.dir}/doc.yaml`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(logLines(r.stdout).find((l) => l.msg === 'firewall policy applied')).toMatchObject({ rules: 3 });
      expectServed(await tcp(DOC_NET), DOC_NET, 80);
      expectServed(await tcp(B), B, 80);
      for (const h of [A, C, LATER]) expectRefused(await tcp(h));
      // This start replaced the IPv6 policy.
      expectServed(await probe(lab, 'client', 'tcp', C6, 80), C6, 80, ADDR6.client);
    });


    it("the documentation's policy over UDP", async () => {
      expectServed(await udp(DOC_NET), DOC_NET, 5000);
      expectServed(await udp(B), B, 5000);
      expectRefused(await udp(A));
    });

    it('a denied connection fails at once with a refusal, not a timeout (curl -m 5)', async () => {
      const r = await lab.exec('client', ['curl', '-sS', '-m', '5', `telnet://${A}:80`], { timeoutMs: 10_000 });
      // 7: could not connect (refused / no route); 28 would be the timeout.
      expect(r.code, r.stderr).toBe(7);
      // curl words it 'Connection refused', 'No route to host' or (newer) 'Couldn't connect to server'.
      expect(r.stderr).toMatch(/refused|No route to host|Couldn't connect/i);
      expect(r.stderr).not.toMatch(/timed out/i);
    });

    it('DNS to the node\'s nameserver is allowed although no rule allows it (UDP and TCP)', async () => {
      expectRefused(await udp(A)); // the policy is in force
      expect(await dnsLookup(lab, 'client', ADDR.dns, 'www.foo.com')).toMatchObject({ ok: true, line: B });
      expect(await dnsLookup(lab, 'client', ADDR.dns, 'big.foo.com')).toMatchObject({ ok: true, line: C });
      expect(dns.queries()).toContain('query big.foo.com A tcp');
    });

    it('a cluster CIDR destination, the node itself, the node\'s own traffic and a pod outside the sources are untouched', async () => {
      expectRefused(await tcp(A)); // the policy is in force
      expectServed(await tcp(SERVICE), SERVICE, 80);
      expectServed(await tcp(ADDR.node), ADDR.node, 80);
      expectServed(await tcp(A, 80, 'node'), A, 80, ADDR.nodeLan);
      expectServed(await tcp(A, 80, 'pod'), A, 80, ADDR.pod);
    });

    it('explain answers from the policy, with the rule and the name\'s resolution', async () => {
      const explain = (dest: string) => lab.exec('node', [process.execPath, BIN, 'explain', 'firewall', CLIENT, dest],
        { env: { ...process.env, EGRESS_FIREWALL_POLICY: `${dir.dir}/doc.yaml`, EGRESS_FIREWALL_SOURCES: `${CLIENT}/32,${ADDR6.client}/128`,
          EGRESS_FIREWALL_INTERFACE: 'eth0', EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14,172.30.0.0/16' } });
      const name = await explain('www.foo.com:443');
      expect(name.code, name.stderr).toBe(0);
      expect(name.stdout.trim()).toMatch(new RegExp(`^rule 2 Allow dnsName www\\.foo\\.com \\(resolved ${B.replace(/\./g, '\\.')}, TTL \\d+ s\\) → allowed$`));
      expect((await explain(`${A}:80`)).stdout.trim()).toMatch(/^rule 3 Deny cidrSelector 0\.0\.0\.0\/0 → (denied|refused|rejected)/);
      expect((await explain(`[${B6}]:80`)).stdout.trim()).toBe('no rule matched → allowed (default)');
      expect((await explain(`${SERVICE}:80`)).stdout.trim()).toBe('destination in cluster CIDR 172.30.0.0/16: not filtered → allowed');
    });

    it('counts hits per rule', async () => {
      expect(await listTable(lab, 'inet', TABLE)).toMatch(/counter packets [1-9]/);
    });
  });

  describe('daemon', () => {
    let dir: ConfigMapDir;
    let fw: Awaited<ReturnType<Lab['spawnReady']>>;
    const P1 = [allow('1.2.3.0/24'), allow('www.foo.com'), allow('later.foo.com'), deny('0.0.0.0/0')];
    const logs = () => logLines(fw.output());
    /** Swap the ConfigMap and wait for the daemon's verdict line; returns when it was seen. */
    async function change(yaml: string, msg = 'firewall policy applied'): Promise<number> {
      const n = logs().filter((l) => l.msg === msg).length;
      dir.update({ 'policy.yaml': yaml });
      await until(`"${msg}" after the ConfigMap swap`, () => logs().filter((l) => l.msg === msg).length > n, 10_000);
      return Date.now();
    }

    /** Handles of the table's chains, sets and rules (`nft -a`), with the objects they name. */
    const objectHandles = async () => {
      const r = await lab.exec('node', ['nft', '-a', 'list', 'table', 'inet', TABLE]);
      return r.stdout.split('\n').filter((l) => /# handle \d+$/.test(l)).map((l) => l.replace(/counter packets \d+ bytes \d+/, 'counter').trim());
    };

    beforeAll(async () => {
      dir = new ConfigMapDir({ 'policy.yaml': policyYaml(P1) });
      fw = await lab.spawnReady('node', [process.execPath, BIN, '--log-format', 'json', 'firewall'], 'firewall ready', {
        env: {
          ...process.env, EGRESS_FIREWALL_POLICY: dir.dir, EGRESS_FIREWALL_SOURCES: `${CLIENT}/32,${ADDR6.client}/128`,
          EGRESS_FIREWALL_INTERFACE: 'eth0', EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14,172.30.0.0/16',
        },
      });
    });
    afterAll(() => {
      if (fw && fw.exitCode === null) fw.kill('SIGKILL');
      dir?.remove();
    });

    it('applies the policy from the ConfigMap folder and logs it', async () => {
      expect(logs().find((l) => l.msg === 'firewall policy applied')).toMatchObject({ rules: 4 });
      expectServed(await tcp(B), B, 80);
      expectRefused(await tcp(A));
    });

    it('a DNS record change moves the allowed address within its TTL; a connection to the old address keeps flowing', async () => {
      const old = hold(lab, 'client', B, 7000, 8);
      await until('connected to the old address', () => old.banner(), 3000);
      const handles = await objectHandles();
      dns.setZone({ ...ZONE, 'www.foo.com': { A: [C], ttl: 2 } });
      const t0 = Date.now();
      expectServed(await until('www.foo.com moved to C', async () => { const r = await tcp(C); return r.ok && r; }, 6000), C, 80);
      // TTL 2 s, plus a lookup and one set update.
      expect(Date.now() - t0).toBeLessThan(4500);
      expectRefused(await tcp(B));
      expect(logs().find((l) => l.msg === 'name updated' && l.name === 'www.foo.com')).toMatchObject({ added: [C], removed: [B] });
      // Updated in place: every chain, set and rule is the same object as before (a reload would renumber them).
      expect(await objectHandles()).toEqual(handles);
      const moved = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      expect(old.echoesAfter(moved), old.error()).toBeGreaterThan(3);
      expect(old.error()).toBeUndefined();
    });

    it('a name that did not exist at start becomes reachable once it does', async () => {
      expect(logs().find((l) => l.msg === 'name lookup failed' && l.name === 'later.foo.com')).toBeTruthy();
      expectRefused(await tcp(LATER));
      dns.setZone({ ...ZONE, 'www.foo.com': { A: [C], ttl: 2 }, 'later.foo.com': { A: [LATER], ttl: 2 } });
      expectServed(await until('later.foo.com reachable', async () => { const r = await tcp(LATER); return r.ok && r; }, 15_000, 300), LATER, 80);
    });

    it('a policy change applies to new connections, keeps an established one it allows and cuts one it denies', async () => {
      const kept = hold(lab, 'client', C, 7000, 10);
      const cut = hold(lab, 'client', DOC_NET, 7000, 10);
      // A flow where only the server talks must be cut too (its packets toward the pod are not what is judged).
      const told = hold(lab, 'client', DOC_NET, 7100, 10, 'watch');
      await until('all connected', () => kept.banner() && cut.banner() && told.banner(), 3000);
      const at = await change(policyYaml([deny('1.2.3.0/24'), ...P1]));
      expectRefused(await tcp(DOC_NET));
      expectServed(await tcp(C), C, 80);
      await new Promise((r) => setTimeout(r, 1500));
      expect(kept.echoesAfter(at + 500), kept.error()).toBeGreaterThan(3);
      expect(kept.error()).toBeUndefined();
      // Cut: reset, or at least nothing flows any more.
      expect(cut.error() !== undefined || cut.echoesAfter(at + 500) === 0, `echoes ${cut.echoesAfter(at + 500)}`).toBe(true);
      expect(told.error() !== undefined || told.echoesAfter(at + 500) === 0, `ticks ${told.echoesAfter(at + 500)}`).toBe(true);
      expect(logs().find((l) => l.msg === 'established flows now denied were cut')?.pairs).toContain(`${CLIENT} -> ${DOC_NET}`);
    });

    it('an invalid change is logged with its error line and the running rules stay', async () => {
      const before = (await listTable(lab, 'inet', TABLE)).replace(/counter packets \d+ bytes \d+/g, 'counter');
      await change(policyYaml([allow('1.2.3.0/24'), { type: 'Bob', to: { cidrSelector: '0.0.0.0/0' } }]), 'firewall policy rejected, keeping running rules');
      const line = logs().find((l) => l.msg === 'firewall policy rejected, keeping running rules');
      expect(String(line?.err)).toContain('spec.egress[1].type: Invalid value: "Bob": invalid policy type');
      expect((await listTable(lab, 'inet', TABLE)).replace(/counter packets \d+ bytes \d+/g, 'counter')).toBe(before);
      expectRefused(await tcp(DOC_NET));
      expectServed(await tcp(C), C, 80);
    });

    it('a failed refresh keeps the last good addresses', async () => {
      const failures = () => logs().filter((l) => l.msg === 'name lookup failed' && l.name === 'www.foo.com').length;
      const n = failures();
      dns.setZone({ ...ZONE, 'www.foo.com': { rcode: 'SERVFAIL' }, 'later.foo.com': { A: [LATER], ttl: 2 } });
      await until('a failed refresh of www.foo.com', () => failures() > n, 8000);
      expectServed(await tcp(C), C, 80);
      dns.setZone({ ...ZONE, 'www.foo.com': { A: [C], ttl: 2 }, 'later.foo.com': { A: [LATER], ttl: 2 } });
    });

    it('the reversed order denies every external address, TCP and UDP', async () => {
      await change(policyYaml([...DOC].reverse()));
      for (const h of [DOC_NET, C, A, LATER]) expectRefused(await tcp(h));
      for (const h of [DOC_NET, B]) expectRefused(await udp(h));
    });

    it('under deny-all, DNS to the resolver still works (UDP and TCP), and so does a cluster CIDR', async () => {
      expectRefused(await tcp(C)); // deny-all is in force
      expect(await dnsLookup(lab, 'client', ADDR.dns, 'www.foo.com')).toMatchObject({ ok: true, line: C });
      const tcpBefore = dns.queries().filter((q) => q === 'query big.foo.com A tcp').length;
      expect(await dnsLookup(lab, 'client', ADDR.dns, 'big.foo.com')).toMatchObject({ ok: true, line: C });
      expect(dns.queries().filter((q) => q === 'query big.foo.com A tcp').length).toBeGreaterThan(tcpBefore);
      expectServed(await tcp(SERVICE), SERVICE, 80);
      expectServed(await tcp(A, 80, 'pod'), A, 80, ADDR.pod);
    });

    it('SIGTERM ends the daemon and leaves the rules in place', async () => {
      const exited = new Promise<string>((r) => fw.once('exit', (code, signal) => r(`exited ${code ?? signal}`)));
      fw.kill('SIGTERM');
      expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('still running'), 5000))])).toMatch(/^exited (0|SIGTERM|143)$/);
      expect(await listTable(lab, 'inet', TABLE)).not.toBe('');
      expectRefused(await tcp(C));
    });

    it('--remove deletes the firewall table; traffic flows again', async () => {
      const r = await lab.exec('node', [process.execPath, BIN, '--log-format', 'json', 'firewall', '--remove'], { timeoutMs: 20_000 });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await listTable(lab, 'inet', TABLE)).toBe('');
      expectServed(await tcp(A), A, 80);
      expectServed(await tcp(DOC_NET), DOC_NET, 80);
      expectServed(await udp(B), B, 5000);
    });

    it('foreign tables are byte-identical after everything', async () => {
      expect(await listForeign()).toEqual(foreign);
    });
  });
});
