/**
 * The parts of /etc/resolv.conf our resolver honours: nameserver lines and
 * `options timeout:N attempts:N`, with glibc's defaults and limits so the
 * proxy behaves as the image's resolver did in the same pod.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export interface ResolvConf {
  readonly nameservers: string[];
  readonly timeoutMs: number;
  readonly attempts: number;
}

// glibc: timeout 5 s (capped at 30), attempts 2 (capped at 5), at most 3 servers.
const MAX_NS = 3;

export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let timeout = 5;
  let attempts = 2;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...args] = line.split(/\s+/);
    if (key === 'nameserver' && args[0]) {
      // A zone index (fe80::1%eth0) is kept: dgram accepts it.
      const addr = args[0];
      if (isIP(addr.replace(/%.*$/, '')) && nameservers.length < MAX_NS) nameservers.push(addr);
    } else if (key === 'options') {
      for (const opt of args) {
        const m = /^(timeout|attempts):(\d+)$/.exec(opt);
        if (!m) continue;
        const n = Number(m[2]);
        if (m[1] === 'timeout') timeout = Math.min(Math.max(n, 1), 30);
        else attempts = Math.min(Math.max(n, 1), 5);
      }
    }
  }
  // No nameserver line means the local one, as in glibc.
  if (nameservers.length === 0) nameservers.push('127.0.0.1');
  return { nameservers, timeoutMs: timeout * 1000, attempts };
}

export function readResolvConf(path = '/etc/resolv.conf'): ResolvConf {
  let text = '';
  try { text = readFileSync(path, 'utf8'); } catch { /* missing file: glibc defaults */ }
  return parseResolvConf(text);
}
