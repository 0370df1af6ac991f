// Test servers for the lab's "internet": each reports the client address it
// sees, so tests can assert the egress source IP from the server's own words.
//   node servers.mjs --tcp IP:PORT,... --udp IP:PORT,... --http IP:PORT,...
// TCP: writes "<ip>:<port> sees <client-ip>:<client-port>\n" and closes.
// Echo (--echo): the same line, then echoes what it receives until the client closes.
// UDP: answers each datagram with the same line. HTTP: that line as the body.
import net from 'node:net';
import dgram from 'node:dgram';
import http from 'node:http';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? [] : process.argv[i + 1].split(',').filter(Boolean);
};
const split = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i).replace(/^\[|\]$/g, ''), Number(s.slice(i + 1))]; };
const line = (ip, port, cip, cport) => `${ip}:${port} sees ${cip.replace(/^::ffff:/, '')}:${cport}\n`;
let pending = 0;
const ready = () => { if (--pending === 0) process.stdout.write('ready\n'); };

for (const s of arg('--tcp')) {
  const [ip, port] = split(s); pending++;
  net.createServer((c) => { c.on('error', () => {}); c.end(line(ip, port, c.remoteAddress, c.remotePort)); })
    .listen(port, ip, ready);
}
for (const s of arg('--echo')) {
  const [ip, port] = split(s); pending++;
  net.createServer((c) => { c.on('error', () => {}); c.write(line(ip, port, c.remoteAddress, c.remotePort)); c.pipe(c); })
    .listen(port, ip, ready);
}
for (const s of arg('--udp')) {
  const [ip, port] = split(s); pending++;
  const sock = dgram.createSocket(ip.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', (_m, r) => sock.send(line(ip, port, r.address, r.port), r.port, r.address));
  sock.bind(port, ip, ready);
}
for (const s of arg('--http')) {
  const [ip, port] = split(s); pending++;
  http.createServer((req, res) => {
    const body = line(ip, port, req.socket.remoteAddress, req.socket.remotePort);
    req.resume();
    req.on('end', () => { res.setHeader('content-type', 'text/plain'); res.end(body); });
  }).listen(port, ip, ready);
}
if (pending === 0) process.stdout.write('ready\n');
process.on('SIGTERM', () => process.exit(0));
