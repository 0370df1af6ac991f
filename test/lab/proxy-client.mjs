// Raw proxy clients for the HTTP proxy's end-to-end tests (what curl cannot do):
//   node proxy-client.mjs halfclose PROXY:PORT TARGET:PORT   CONNECT, send "ping", shut down
//       writing, print everything read until the tunnel closes (half-close must carry the reply)
//   node proxy-client.mjs slowloris PROXY:PORT MAXLINES INTERVALMS   headers one line at a time,
//       never finishing; print JSON {closedAfterMs, lines, reply} when the proxy cuts us off
//   node proxy-client.mjs reset PROXY:PORT TARGET:PORT MS   CONNECT, then reset the connection (RST)
//       after MS: a client gone while its tunnel connects; print JSON {reply} (what came before)
// All are bounded: MAXLINES lines at most, and a hard 20 s exit.
import net from 'node:net';

const [mode, proxy, a3, a4] = process.argv.slice(2);
const cut = proxy.lastIndexOf(':');
const s = net.connect(Number(proxy.slice(cut + 1)), proxy.slice(0, cut));
setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, 20_000).unref();
let got = '';
s.on('data', (d) => (got += d));
s.on('error', (e) => { got += `[${e.code}]`; });

if (mode === 'halfclose') {
  s.on('connect', () => s.write(`CONNECT ${a3} HTTP/1.1\r\nHost: ${a3}\r\n\r\n`));
  let sent = false;
  s.on('data', () => {
    if (!sent && got.includes('\r\n\r\n')) { sent = true; s.end('ping\n'); }
  });
  s.on('close', () => { process.stdout.write(got); process.exit(0); });
} else if (mode === 'slowloris') {
  const start = Date.now();
  let lines = 0;
  s.on('connect', () => {
    s.write('GET http://example.invalid/ HTTP/1.1\r\n');
    const t = setInterval(() => {
      if (lines >= Number(a3) || s.destroyed) return clearInterval(t);
      s.write(`X-Slow-${lines++}: x\r\n`);
    }, Number(a4));
  });
  s.on('close', () => { console.log(JSON.stringify({ closedAfterMs: Date.now() - start, lines, reply: got })); process.exit(0); });
} else if (mode === 'reset') {
  s.on('connect', () => {
    s.write(`CONNECT ${a3} HTTP/1.1\r\nHost: ${a3}\r\n\r\n`);
    setTimeout(() => s.resetAndDestroy(), Number(a4));
  });
  s.on('close', () => { console.log(JSON.stringify({ reply: got })); process.exit(0); });
}
