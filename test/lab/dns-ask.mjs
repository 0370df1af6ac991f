// One DNS question, printed as the answer's hex bytes (or "timeout").
//   node dns-ask.mjs SERVER NAME TYPE udp|tcp [edns]
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

const [server, name, type, proto, edns] = process.argv.slice(2);
const msg = dnsPacket.encode({
  type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }],
  additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096, flags: 0, options: [] }] : [],
});
const print = (b) => { process.stdout.write(b.toString('hex') + '\n'); process.exit(0); };
setTimeout(() => { process.stdout.write('timeout\n'); process.exit(1); }, 3000);
if (proto === 'tcp') {
  const c = net.connect(53, server);
  const h = Buffer.alloc(2);
  h.writeUInt16BE(msg.length);
  c.write(Buffer.concat([h, msg]));
  let buf = Buffer.alloc(0);
  c.on('data', (d) => { buf = Buffer.concat([buf, d]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) print(buf.subarray(2, 2 + buf.readUInt16BE(0))); });
} else {
  const s = dgram.createSocket('udp4');
  s.on('message', print);
  s.send(msg, 53, server);
}
