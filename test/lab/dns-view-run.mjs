// The DNS view's forwarders in a lab namespace, learning into a real nft set.
//   node dns-view-run.mjs --forward PORT=UPSTREAM[,UPSTREAM] ... --rules NAME,NAME
//        --table inet/TABLE --set4 NAME --set6 NAME [--gate RULE] [--timeout MS]
//        [--grace S] [--quiet] [--writer netlink|nft] [--sockets N] [--learn-after MS]
//        [--verdict CHAIN] (the sets are verdict maps: elements `: goto CHAIN`, as the firewall's learned maps)
//        (UPSTREAM is ADDR or ADDR#PORT)
// Prints JSON lines: {"event":"ready"}, {"event":"learned",rules,addresses,ttl}
// once nft acknowledged an add. With --gate RULE, a learn for that rule then
// waits for a "go" line on stdin (the test looks at the set meanwhile).
// A "stats" line on stdin prints {"event":"stats", "<port>": {...}}.
import { createInterface } from 'node:readline';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const view = await import(join(ROOT, 'dist/engines/firewall/dns-view/index.js'));
const { NftSession } = await import(join(ROOT, 'dist/apply/nft-session.js'));
const { NftElementWriter } = await import(join(ROOT, 'dist/apply/nft-netlink.js'));

const args = process.argv.slice(2);
const all = (k) => args.flatMap((a, i) => (a === k ? [args[i + 1]] : []));
const one = (k, d) => all(k)[0] ?? d;
const [family, table] = one('--table').split('/');
const set4 = one('--set4'), set6 = one('--set6');
const gate = one('--gate');
const rules = one('--rules', '').split(',').filter(Boolean);
const quiet = args.includes('--quiet');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// --writer nft: element updates as nft text through a running `nft -i`; default: netlink.
const session = one('--writer', 'netlink') === 'nft' ? new NftSession() : undefined;
const writer = session ? undefined : new NftElementWriter(family, table);
const write = session ? view.nftSessionWrite(session, { family, table }) : view.netlinkWrite(writer);
const verdict = one('--verdict');
const targetsOf = verdict ? (_rules, _address, fam) => [{ set: fam === 4 ? set4 : set6, verdict: { goto: verdict } }] : undefined;
const learner = view.nftLearner({ setsOf: () => ({ 4: set4, 6: set6 }), targetsOf, graceSeconds: Number(one('--grace', 30)), write });
const waiting = [];
// --learn-after MS: release the answer at once and update the set MS later,
// as a resolver-watching controller would (the race the view exists to close).
const after = all('--learn-after').length ? Number(one('--learn-after')) : undefined;
const learn = after !== undefined ? async (ruleNames, addresses, ttl) => {
  setTimeout(() => learner.learn(ruleNames, addresses, ttl).catch(() => {}), after);
} : async (ruleNames, addresses, ttl) => {
  await learner.learn(ruleNames, addresses, ttl);
  if (!quiet) out({ event: 'learned', rules: ruleNames, addresses: addresses.map((a) => a.address), ttl });
  if (gate && ruleNames.includes(gate)) await new Promise((r) => waiting.push(r));
};
// The learner's shadow may release an answer at once (addresses already committed).
if (after === undefined) learn.covered = learner.learn.covered;

const forwarders = {};
for (const f of all('--forward')) {
  const [port, ups] = f.split('=');
  forwarders[port] = await view.DnsViewForwarder.start({
    host: '0.0.0.0', port: Number(port), upstreams: ups.split(',').map((u) => ({ address: u.split('#')[0], port: Number(u.split('#')[1] ?? 53) })),
    matcher: view.compileMatcher(rules), learn, learnTimeoutMs: Number(one('--timeout', 250)), upstreamSockets: Number(one('--sockets', 4)),
  });
}
createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'go') waiting.shift()?.();
  if (l === 'stats') out({ event: 'stats', learner: { ...learner.counts }, ...Object.fromEntries(Object.entries(forwarders).map(([p, f]) => [p, { ...f.stats }])) });
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { for (const f of Object.values(forwarders)) f.destroy(); session?.close(); writer?.close(); process.exit(0); });
out({ event: 'ready' });
