// Framing helpers for test/e2e/http-proxy-framing.test.ts (bounded: hard exit).
//   serve IP:PORT     upstream answering by path, on raw sockets so framing is exact:
//                     /cl/N (Content-Length), /chunked/N, /close/N (no length, close),
//                     /204, /304, any path to HEAD; each body is N bytes of 'x';
//                     a request with a body gets 200, empty, with x-got: <decoded body>
//   raw PROXY B64 MS  send the request bytes (base64), print {reply, closed} as JSON
//                     once the proxy closes or nothing arrived for MS
import net from 'node:net';

setTimeout(() => process.exit(3), 20_000).unref();
const [mode, a1, a2, a3] = process.argv.slice(2);
const split = (s) => { const i = s.lastIndexOf(':'); return [s.slice(0, i), Number(s.slice(i + 1))]; };

if (mode === 'serve') {
  const [ip, port] = split(a1);
  net.createServer((c) => {
    c.on('error', () => {});
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString('latin1');
      for (let e; (e = buf.indexOf('\r\n\r\n')) >= 0;) {
        const head = buf.slice(0, e);
        let rest = buf.slice(e + 4);
        // Request bodies (as the proxy re-framed them): decoded into x-got.
        let got = '';
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (cl) {
          if (rest.length < Number(cl[1])) return;
          got = rest.slice(0, Number(cl[1]));
          rest = rest.slice(Number(cl[1]));
        } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          const end = rest.indexOf('\r\n0\r\n\r\n');
          if (end < 0 && !rest.startsWith('0\r\n\r\n')) return;
          const body = rest.startsWith('0\r\n\r\n') ? '' : rest.slice(0, end + 2);
          rest = rest.slice(rest.startsWith('0\r\n\r\n') ? 5 : end + 7);
          for (let b = body; b.length > 0;) {
            const le = b.indexOf('\r\n');
            const n = parseInt(b.slice(0, le), 16);
            got += b.slice(le + 2, le + 2 + n);
            b = b.slice(le + 4 + n);
          }
        }
        buf = rest;
        const [method, path] = head.split(' ');
        if (got) c.write(`HTTP/1.1 200 OK\r\nx-got: ${got}\r\ncontent-length: 0\r\n\r\n`);
        if (got) continue;
        const [, kind, n] = path.split('/');
        const body = 'x'.repeat(Number(n) || 0);
        if (method === 'HEAD') c.write('HTTP/1.1 200 OK\r\ncontent-length: 1234\r\nx-kind: head\r\n\r\n');
        else if (kind === '204') c.write('HTTP/1.1 204 No Content\r\nx-kind: 204\r\n\r\n');
        else if (kind === '304') c.write('HTTP/1.1 304 Not Modified\r\netag: "v1"\r\n\r\n');
        else if (kind === 'cl') c.write(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        else if (kind === 'chunked') c.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
        else if (kind === 'close') { c.end(`HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n${body}`); return; }
        else c.write('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      }
    });
  }).listen(port, ip, () => console.log('ready'));
} else if (mode === 'raw') {
  const [ip, port] = split(a1);
  const quiet = Number(a3 ?? 500);
  const s = net.connect({ host: ip, port });
  let reply = Buffer.alloc(0);
  let timer;
  const finish = (closed) => { clearTimeout(timer); console.log(JSON.stringify({ reply: reply.toString('latin1'), closed })); process.exit(0); };
  const arm = () => { clearTimeout(timer); timer = setTimeout(() => finish(false), quiet); };
  s.on('connect', () => { s.write(Buffer.from(a2, 'base64')); arm(); });
  s.on('data', (d) => { reply = Buffer.concat([reply, d]); arm(); });
  s.on('end', () => finish(true));
  s.on('error', () => finish(true));
}
