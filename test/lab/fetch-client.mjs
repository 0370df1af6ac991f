// Node's fetch through undici's ProxyAgent, as an application configured for
// an egress proxy does it, for the HTTP proxy's client tests:
//   node fetch-client.mjs PROXY_URL URL [--ca FILE] [--no-tunnel] [--global]
// --ca: trust this CA for the target's TLS (requestTls.ca).
// --no-tunnel: plain http:// targets go as absolute-form requests
// (proxyTunnel: false) instead of undici's default CONNECT tunnel.
// --global: Node's built-in fetch (its bundled undici) with the ProxyAgent of
// the undici package as dispatcher, instead of the package's own fetch.
// Prints one JSON line {status, body, via} or {error, cause}; exits 0 on any
// HTTP answer, 2 on a fetch error. Bounded: 10 s abort, hard 15 s exit.
import { readFileSync } from 'node:fs';
import { fetch as undiciFetch, ProxyAgent } from 'undici';

setTimeout(() => { console.log(JSON.stringify({ error: 'hard timeout' })); process.exit(3); }, 15_000).unref();
const [proxy, url, ...rest] = process.argv.slice(2);
const ca = rest.includes('--ca') ? readFileSync(rest[rest.indexOf('--ca') + 1], 'utf8') : undefined;
const dispatcher = new ProxyAgent({ uri: proxy, proxyTunnel: !rest.includes('--no-tunnel'), ...(ca ? { requestTls: { ca } } : {}) });
try {
  const fetch = rest.includes('--global') ? globalThis.fetch : undiciFetch;
  const res = await fetch(url, { dispatcher, signal: AbortSignal.timeout(10_000) });
  console.log(JSON.stringify({ status: res.status, body: await res.text(), via: res.headers.get('via') }));
  await dispatcher.close();
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e), cause: String(e?.cause?.message ?? e?.cause ?? '') }));
  process.exit(2);
}
