// A static file server for the HTTP proxy's client tests (git over dumb HTTP,
// a pip "simple" index, wget), over plain HTTP and HTTPS, in the lab's
// internet namespace:
//   node file-server.mjs --dir DIR [--http IP:PORT] [--https IP:PORT --cert CRT --key KEY]
// GET/HEAD of a file under DIR (a path ending in / serves its index.html);
// the query string is ignored, as a dumb git server's is. /whoami answers
// "<ip>:<port> sees <client-ip>:<client-port>\n", as test/lab/servers.mjs does.
// One JSON line on stdout per request: {path, from, status, tls, host, ua},
// so tests assert the source address each client's requests arrived from.
// Prints "ready" once every listener is up.
import http from 'node:http';
import https from 'node:https';
import { readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const split = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i).replace(/^\[|\]$/g, ''), Number(s.slice(i + 1))]; };
const dir = normalize(arg('--dir') ?? process.cwd());
const TYPES = { '.html': 'text/html', '.whl': 'application/octet-stream', '.txt': 'text/plain' };

function handler(ip, port, tls) {
  return (req, res) => {
    const from = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    const done = (status, body, type = 'text/plain') => {
      process.stdout.write(`${JSON.stringify({ path: req.url, from, status, tls, host: req.headers.host ?? null, ua: req.headers['user-agent'] ?? null })}\n`);
      res.writeHead(status, { 'content-type': type, 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') return done(405, Buffer.from('method not allowed\n'));
    if (path === '/whoami') return done(200, Buffer.from(`${ip}:${port} sees ${from}:${req.socket.remotePort}\n`));
    let file = normalize(join(dir, path.endsWith('/') ? `${path}index.html` : path));
    if (file !== dir && !file.startsWith(dir + sep)) return done(403, Buffer.from('outside the served folder\n'));
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      done(200, readFileSync(file), TYPES[extname(file)] ?? 'application/octet-stream');
    } catch {
      done(404, Buffer.from('not found\n'));
    }
  };
}

const listeners = [];
if (arg('--http')) {
  const [ip, port] = split(arg('--http'));
  listeners.push([http.createServer(handler(ip, port, false)), ip, port]);
}
if (arg('--https')) {
  const [ip, port] = split(arg('--https'));
  const opts = { cert: readFileSync(arg('--cert')), key: readFileSync(arg('--key')) };
  listeners.push([https.createServer(opts, handler(ip, port, true)), ip, port]);
}
let pending = listeners.length;
for (const [server, ip, port] of listeners) server.listen(port, ip, () => { if (--pending === 0) process.stdout.write('ready\n'); });
if (pending === 0) process.stdout.write('ready\n');
process.on('SIGTERM', () => process.exit(0));
