/**
 * `make demo`: the lab (network namespaces only), then every mode run by
 * `egress-router daemon` in the egress pod, shown in the servers' own words:
 * redirect, the HTTP proxy (an allowed and a denied request), the DNS proxy,
 * the egress firewall on the node (an allowed and a refused client);
 * a destination file changed while a connection through the router stays
 * open; and /metrics after the traffic. Everything is removed at the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ADDR, type Lab } from './lab.js';
import { startDnsServer, type DnsServer } from './dns.js';
import { client, exited, health, sleep, startRouter, until, type Proc } from './ops.js';
import { allow, deny, policyYaml, routeThroughNode } from './firewall.js';

const [A, B, C] = ADDR.inet as unknown as [string, string, string];
const METRICS = `${ADDR.pod}:9464`;
const say = (s = '') => process.stdout.write(s + '\n');
const indent = (s: string, p = '    ') => s.trim().split('\n').map((l) => p + l).join('\n');

async function show(lab: Lab, what: string, argv: string[]): Promise<void> {
  const r = await lab.exec('client', argv, { timeoutMs: 8000 });
  say(`  client$ ${argv.join(' ')}`);
  const who = r.stdout ? '    server says: ' : '    client sees: ';
  say(`${indent((r.stdout || r.stderr || '(nothing: connection refused)').trim(), who)}   <- ${what}`);
}

/** The router's own log lines with these messages, in text form. */
function logLines(p: Proc, msgs: string[]): string {
  return p.output().split('\n').filter((l) => msgs.some((m) => l.includes(`"msg":"${m}"`))).map((l) => {
    const o = JSON.parse(l) as Record<string, unknown>;
    const { level: _l, time: _t, msg, ...rest } = o;
    return `    router| ${msg} ${Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ')}`;
  }).join('\n');
}

async function stop(lab: Lab, p: Proc): Promise<void> {
  p.kill('SIGTERM');
  const r = await exited(p);
  say(`  SIGTERM -> drained, exit ${r.code}`);
  // Each mode would be its own pod; here they take turns in one, so the redirect table goes.
  await lab.exec('pod', ['nft', 'delete', 'table', 'ip', 'egress_router']);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  say('egress-router demo: building the lab (network namespaces only)...');
  const lab = await createLab({ tcp: [`${A}:80`, `${B}:80`, `${C}:80`], http: [`${A}:8000`, `${B}:8000`], echo: [`${A}:7000`] });
  const dir = mkdtempSync(join(tmpdir(), 'erl-demo-'));
  let dns: DnsServer | undefined;
  const env = (mode: string, extra: Record<string, string>) => ({ ...lab.routerEnv({ EGRESS_ROUTER_MODE: mode }), EGRESS_ROUTER_METRICS_ADDRESS: METRICS, ...extra } as Record<string, string>);
  try {
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: { 'db.example': { A: [C], ttl: 5 } } });
    lab.writeResolvConf('pod', ADDR.dns);
    say(`  internet ${A}, ${B}, ${C} (DNS ${ADDR.dns})  |  gateway ${ADDR.gateway}  |  egress pod ${ADDR.pod} (macvlan0, egress IP ${ADDR.source})  |  client ${ADDR.client}`);

    say('\n== redirect (EGRESS_ROUTER_MODE=legacy), one process: egress-router daemon');
    const dest = join(dir, 'destination');
    writeFileSync(dest, `80 tcp ${A}\n7000 tcp ${A}\n`);
    say(`  EGRESS_DESTINATION_FILE: 80 tcp ${A} / 7000 tcp ${A}`);
    let p = await startRouter(lab, 'pod', ['daemon'], env('legacy', { EGRESS_DESTINATION_FILE: dest }));
    await show(lab, 'port 80 mapped to A', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:80`]);
    say('  a client opens an echo connection through port 7000 and keeps it for 4 s...');
    const held = client(lab, ['hold', `${ADDR.pod}:7000`, '100', '4000']);
    await sleep(800);
    writeFileSync(dest, `80 tcp ${B}\n7000 tcp ${A}\n8080 tcp ${C} 80\n`);
    say(`  the ConfigMap changes: 80 tcp ${B} / 7000 tcp ${A} / 8080 tcp ${C} 80`);
    await until(() => p.output().includes('"msg":"configuration reloaded"'));
    say(logLines(p, ['configuration reloaded']));
    await show(lab, 'port 80 now goes to B', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:80`]);
    await show(lab, 'new port 8080', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:8080`]);
    const h = await held as { openAtEnd: boolean; sent: number; echoed: number; greeting: string };
    say(`    the held connection (${h.greeting}): ${h.echoed}/${h.sent} pings echoed across the reload, still open: ${h.openAtEnd}`);
    await stop(lab, p);

    say('\n== http-proxy, one process: egress-router daemon');
    const rules = join(dir, 'rules');
    writeFileSync(rules, `${A}\n!${B}\n`);
    say(`  EGRESS_HTTP_PROXY_DESTINATION_FILE: ${A} / !${B}`);
    p = await startRouter(lab, 'pod', ['daemon'], env('http-proxy', { EGRESS_HTTP_PROXY_DESTINATION_FILE: rules }));
    await show(lab, 'allowed', ['curl', '-sS', '-m', '3', '-x', `http://${ADDR.pod}:8080`, `http://${A}:8000/`]);
    await show(lab, 'denied: what the client sees', ['curl', '-sS', '-m', '3', '-x', `http://${ADDR.pod}:8080`, `http://${B}:8000/`]);
    say('  /metrics after that traffic (a few of its lines):');
    const m = (await health(lab, 'pod', METRICS, '/metrics')).body;
    say(indent(m.split('\n').filter((l) => /^egress_router_(connections_accepted|connections_refused|policy_decisions|config_generation|config_last_reload_successful|build_info)/.test(l)).join('\n')));
    say(`  /readyz: ${(await health(lab, 'pod', METRICS, '/readyz')).body.trim()}`);
    await stop(lab, p);

    say('\n== dns-proxy, one process: egress-router daemon');
    say('  EGRESS_DNS_PROXY_DESTINATION: 5432 db.example 80  (db.example resolves to C)');
    p = await startRouter(lab, 'pod', ['daemon'], env('dns-proxy', { EGRESS_DNS_PROXY_DESTINATION: '5432 db.example 80' }));
    await show(lab, 'the name, followed as it changes', ['curl', '-sS', '-m', '2', `telnet://${ADDR.pod}:5432`]);
    await stop(lab, p);

    say(`\nEvery server saw ${ADDR.source}, the egress IP, never the client's ${ADDR.client}.`);

    say('\n== the egress firewall on the node (egress-router firewall): the client pod routed out through the node');
    await routeThroughNode(lab);
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, policyYaml([deny(`${B}/32`), allow('0.0.0.0/0')]));
    say(`  EgressNetworkPolicy for ${ADDR.client}/32: Deny ${B}/32, then Allow 0.0.0.0/0`);
    const FM = '127.0.0.1:9465';
    p = await startRouter(lab, 'node', ['firewall'], {
      EGRESS_FIREWALL_POLICY: policy, EGRESS_FIREWALL_SOURCES: `${ADDR.client}/32`, EGRESS_FIREWALL_INTERFACE: 'eth0',
      EGRESS_FIREWALL_CLUSTER_CIDRS: '10.128.0.0/14', EGRESS_ROUTER_METRICS_ADDRESS: FM,
    });
    await show(lab, 'allowed (no egress router on this path: the client\'s own address)', ['curl', '-sS', '-m', '3', `telnet://${A}:80`]);
    await show(lab, 'denied: what the client sees', ['curl', '-sS', '-m', '3', `telnet://${B}:80`]);
    const fm = (await health(lab, 'node', FM, '/metrics')).body;
    say(indent(fm.split('\n').filter((l) => l.startsWith('egress_router_policy_decisions_total')).join('\n')));
    p.kill('SIGTERM');
    say(`  SIGTERM -> exit ${(await exited(p)).code}, rules left in place (enforcement does not lapse across a restart)`);
    say(`\n(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } finally {
    await dns?.stop();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
    say('lab removed.');
  }
}

main().catch((e) => {
  process.stderr.write(`demo failed: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
