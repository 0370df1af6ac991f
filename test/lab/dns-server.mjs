// A real DNS server for the lab, on dns-packet, UDP and TCP on the same address.
//   node dns-server.mjs --listen IP:PORT --zone FILE
// Zone file (JSON), re-read whenever its mtime or size changes, so tests can
// change records while the server runs:
//   {"name.example": {"A": ["1.2.3.4"], "AAAA": [], "ttl": 5,
//                     "truncate": true,   // UDP answers carry TC and no records: forces TCP
//                     "delayMs": 200,     // answer late (slow name)
//                     "rcode": "SERVFAIL",   // answer with this rcode
//                     "CNAME": "other.name"}} // alias: the answer follows the chain in the zone
// A query with an EDNS OPT record gets one back (payload size 1232).
// Names not in the zone get NXDOMAIN. Each query prints
// "query <name> <type> <udp|tcp>" on stdout, so tests can see what was asked.
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
import dnsPacket from 'dns-packet';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  if (i < 0 || !process.argv[i + 1]) { console.error(`missing ${name}`); process.exit(2); }
  return process.argv[i + 1];
};
const listen = arg('--listen');
const zoneFile = arg('--zone');
const cut = listen.lastIndexOf(':');
const host = listen.slice(0, cut).replace(/^\[|\]$/g, '');
const port = Number(listen.slice(cut + 1));

let zone = {};
let stamp = '';
// Checked on every query rather than with fs.watch: watch misses atomic
// renames on some filesystems, and a stat per query is cheap at test rates.
function currentZone() {
  try {
    const st = fs.statSync(zoneFile);
    const s = `${st.mtimeMs}:${st.size}:${st.ino}`;
    if (s !== stamp) {
      zone = JSON.parse(fs.readFileSync(zoneFile, 'utf8'));
      stamp = s;
    }
  } catch (e) {
    // A half-written file: keep the previous zone and try again next query.
    process.stderr.write(`zone read failed: ${e.message}\n`);
  }
  return zone;
}

function lookup(name) {
  const z = currentZone();
  const key = Object.keys(z).find((k) => k.toLowerCase() === name.toLowerCase().replace(/\.$/, ''));
  return key === undefined ? undefined : z[key];
}

// dns-packet encodes the rcode from the low bits of `flags`, not from `rcode`.
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };
const withRcode = (base, rcode) => ({ ...base, flags: base.flags | (RCODE[rcode] ?? 2), answers: [] });

function answer(query, proto) {
  const q = query.questions?.[0];
  const base = { id: query.id, type: 'response', flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: query.questions ?? [] };
  if (!q) return withRcode(base, 'FORMERR');
  process.stdout.write(`query ${q.name} ${q.type} ${proto}\n`);
  const opt = (query.additionals ?? []).some((r) => r.type === 'OPT');
  const additionals = opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] }] : [];
  let rec = lookup(q.name);
  if (!rec) return { ...withRcode(base, 'NXDOMAIN'), additionals };
  if (rec.rcode) return { ...withRcode(base, rec.rcode), additionals };
  if (rec.truncate && proto === 'udp') {
    return { ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE, answers: [], additionals };
  }
  const answers = [];
  let owner = q.name;
  // Aliases: CNAME records down the chain, then the final name's addresses.
  for (let hops = 0; rec?.CNAME && hops < 8; hops++) {
    answers.push({ type: 'CNAME', name: owner, class: 'IN', ttl: rec.ttl ?? 5, data: rec.CNAME });
    owner = rec.CNAME;
    rec = lookup(owner);
  }
  const ttl = rec?.ttl ?? 5;
  const data = rec && (q.type === 'A' || q.type === 'AAAA') ? (rec[q.type] ?? []) : [];
  for (const d of data) answers.push({ type: q.type, name: owner, class: 'IN', ttl, data: d });
  return { ...base, answers, additionals };
}

function delayFor(query) {
  const q = query.questions?.[0];
  return (q && lookup(q.name)?.delayMs) || 0;
}

function respond(buf, proto, send) {
  let query;
  try { query = dnsPacket.decode(buf); } catch { return; }
  const reply = () => send(dnsPacket.encode(answer(query, proto)));
  const d = delayFor(query);
  if (d > 0) setTimeout(reply, d); else reply();
}

let pending = 2;
const ready = () => { if (--pending === 0) process.stdout.write(`ready ${listen}\n`); };

const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
udp.on('message', (msg, r) => respond(msg, 'udp', (out) => udp.send(out, r.port, r.address)));
udp.on('error', (e) => { console.error(`udp: ${e.message}`); process.exit(1); });
udp.bind(port, host, ready);

const tcp = net.createServer((c) => {
  c.on('error', () => {});
  let buf = Buffer.alloc(0);
  c.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    // TCP DNS: each message is preceded by its 2-byte length.
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const len = buf.readUInt16BE(0);
      const msg = buf.subarray(2, 2 + len);
      buf = buf.subarray(2 + len);
      respond(msg, 'tcp', (out) => {
        const head = Buffer.alloc(2);
        head.writeUInt16BE(out.length);
        if (!c.destroyed) c.write(Buffer.concat([head, out]));
      });
    }
  });
});
tcp.on('error', (e) => { console.error(`tcp: ${e.message}`); process.exit(1); });
tcp.listen(port, host, ready);

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
