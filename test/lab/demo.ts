/**
 * `make demo`: builds the lab, runs the egress router in the egress pod
 * (redirect mode, as an init container would), and shows a client pod
 * reaching the outside with the egress IP, in the servers' own words.
 * Everything lives in throwaway namespaces, removed at the end.
 */
import { createLab, ADDR, BIN, type Lab } from './lab.js';

const [A, B, C] = ADDR.inet;
const DESTINATION = [`80 tcp ${A}`, `8080 tcp ${B} 80`, `5353 udp ${C} 53`, ADDR.fallback].join('\n');

const say = (s = '') => process.stdout.write(s + '\n');

async function show(lab: Lab, title: string, argv: string[], input?: string): Promise<void> {
  const r = await lab.exec('client', argv, { input, timeoutMs: 8000 });
  say(`  client$ ${argv.join(' ')}`);
  say(`  server says: ${(r.stdout || r.stderr).trim()}   <- ${title}`);
}

async function main(): Promise<void> {
  say('egress-router demo: building the lab (network namespaces only)...');
  const lab = await createLab({ tcp: [`${A}:80`, `${B}:80`, `${ADDR.fallback}:443`], udp: [`${C}:53`] });
  try {
    say(`  internet servers ${A}, ${B}, ${C}, ${ADDR.fallback}  |  gateway ${ADDR.gateway}  |  egress pod ${ADDR.pod} (macvlan0)  |  client ${ADDR.client}`);
    say('');
    say(`EGRESS_SOURCE=${ADDR.source} EGRESS_GATEWAY=${ADDR.gateway} EGRESS_ROUTER_MODE=init`);
    say('EGRESS_DESTINATION=');
    for (const l of DESTINATION.split('\n')) say(`  ${l}`);
    say('');
    const r = await lab.exec('pod', [process.execPath, BIN, '--log-format', 'text'], {
      env: lab.routerEnv({ EGRESS_DESTINATION: DESTINATION }), timeoutMs: 20_000,
    });
    process.stdout.write(r.stdout.replace(/^/gm, '  router| '));
    if (r.code !== 0) throw new Error(`router set-up failed: ${r.stderr}`);
    say('');
    await show(lab, 'tcp 80 mapped', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:80`]);
    await show(lab, 'tcp 8080 mapped to remote port 80', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:8080`]);
    await show(lab, 'udp 5353 mapped to port 53', ['socat', '-T', '2', '-', `UDP:${ADDR.pod}:5353`], 'hi\n');
    await show(lab, 'any other port goes to the fallback', ['curl', '-sS', '-m', '3', `telnet://${ADDR.pod}:443`]);
    say('');
    say(`Every server saw ${ADDR.source}, the egress IP, not the client's ${ADDR.client}.`);
    say('');
    say('The router-owned table in the pod (nft list table ip egress_router):');
    const t = await lab.exec('pod', ['nft', 'list', 'table', 'ip', 'egress_router']);
    process.stdout.write(t.stdout.replace(/^/gm, '  '));
  } finally {
    await lab.destroy();
    say('lab removed.');
  }
}

main().catch((e) => {
  process.stderr.write(`demo failed: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
