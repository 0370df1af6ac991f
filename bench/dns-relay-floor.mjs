// The floor of a UDP DNS forwarder in Node: relays datagrams with an ID table
// and nothing else (no parsing, no timeouts). Not a product: the bench's
// reference for what Node's dgram costs per query on this machine.
//   node dns-relay-floor.mjs LISTEN_PORT UPSTREAM_PORT
import dgram from 'node:dgram';

const [port, upPort] = process.argv.slice(2).map(Number);
const front = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const back = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
const pending = new Array(65536);
let next = 0;
front.on('message', (m, r) => {
  const id = next = (next + 1) & 0xffff;
  pending[id] = { cid: m.readUInt16BE(0), port: r.port, address: r.address };
  m.writeUInt16BE(id, 0);
  back.send(m);
});
back.on('message', (m) => {
  const p = pending[m.readUInt16BE(0)];
  if (!p) return;
  pending[m.readUInt16BE(0)] = undefined;
  m.writeUInt16BE(p.cid, 0);
  front.send(m, p.port, p.address);
});
back.connect(upPort, '127.0.0.1', () => front.bind(port, '127.0.0.1', () => console.log('"ready"')));
