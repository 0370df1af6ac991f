/**
 * HTTP proxy mode with real, unmodified clients, as the issue asks: "Clients
 * set http_proxy/https_proxy to http://<router>:8080/ and must work
 * unchanged: curl, Node's fetch through a proxy agent, pip, git" (and wget).
 *
 * The proxy runs in the pod (after the init container set up macvlan0) with a
 * name policy; a real DNS server in the internet namespace serves the names;
 * test/lab/file-server.mjs serves files over HTTP and HTTPS there and logs the
 * source address of every request. Everything fed to the clients is made at
 * test time in a temp folder: a CA and a server certificate (openssl), a bare
 * git repository for dumb HTTP (git), a PEP 503 "simple" index with one wheel
 * (python3's zipfile). curl, git and pip go both ways: plain HTTP (the
 * proxy forwards absolute-form requests) and HTTPS (CONNECT tunnels, the
 * client checks the server's certificate against the test CA). The client
 * namespace's resolver points at nothing (127.0.0.1), so every name below is
 * resolved by the proxy alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, ADDR, ROOT, type Lab } from '../lab/lab.js';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { sh } from '../lab/sh.js';
import { BIN, ensureBuilt } from '../unit/dist.js';

const [A] = ADDR.inet as unknown as [string];
const FILES = 'files.example'; // plain HTTP: git, pip, wget, fetch
const SECURE = 'secure.example'; // HTTPS: the certificate is for this name
const BLOCKED = 'blocked.example'; // same address as the others, denied by name
const ZONE = { [FILES]: { A: [A] }, [SECURE]: { A: [A] }, [BLOCKED]: { A: [A] } };
const POLICY = [`!${BLOCKED}`, FILES, SECURE].join('\n');
const DENIED_BODY = `denied by rule 1: !${BLOCKED}`;
const PROXY = `http://${ADDR.pod}:8080`;
const PKG = 'erlabhello';
const WHEEL = `${PKG}-1.0-py3-none-any.whl`;
const README = 'hello from the lab repository\n';
const FETCH = join(ROOT, 'test/lab/fetch-client.mjs');
const FILE_SERVER = join(ROOT, 'test/lab/file-server.mjs');

type Proc = Awaited<ReturnType<Lab['spawnReady']>>;
interface Served { path: string; from: string; status: number; tls: boolean; host: string | null; ua: string | null }
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** What file-server.mjs answers on /whoami when the request left from the egress source IP. */
const sees = (port: number) => new RegExp(`^${esc(A)}:${port} sees ${esc(ADDR.source)}:\\d+\\n?$`);

/** Minimal wheel: a module, METADATA, WHEEL and a RECORD with each file's hash. */
const WHEEL_PY = String.raw`
import base64, hashlib, sys, zipfile
out, name, ver = sys.argv[1:4]
info = f'{name}-{ver}.dist-info'
files = {
    f'{name}/__init__.py': f'GREETING = "hello from {name}"\n',
    f'{info}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\nSummary: egress-router lab package\n',
    f'{info}/WHEEL': 'Wheel-Version: 1.0\nGenerator: egress-router-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
}
digest = lambda d: 'sha256=' + base64.urlsafe_b64encode(hashlib.sha256(d.encode()).digest()).rstrip(b'=').decode()
files[f'{info}/RECORD'] = ''.join(f'{p},{digest(d)},{len(d.encode())}\n' for p, d in files.items()) + f'{info}/RECORD,,\n'
with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:
    for p, d in files.items():
        z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), d)
`;

describe('http-proxy with real clients (curl, fetch, git, pip, wget)', () => {
  let lab: Lab;
  let dns: DnsServer;
  let proxy: Proc;
  let server: Proc;
  let tmp: string;
  let home: string;
  let ca: string;
  let python: string;
  let wheelSha: string;

  /** A clean client environment: no inherited proxy variables, no user config. */
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, LANG: 'C', LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', PIP_CONFIG_FILE: '/dev/null', ...extra,
  });
  /** Run a command in the root namespace (set-up only: nothing here uses the network). */
  const local = async (argv: string[], extra: Record<string, string> = {}) => {
    const r = await sh(argv, { env: env(extra), timeoutMs: 15_000 });
    if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  };
  const client = (argv: string[], extra: Record<string, string> = {}, timeoutMs = 20_000) =>
    lab.exec('client', argv, { env: env(extra), timeoutMs });

  /** curl in the client namespace; stdout is the body then a last line with the status. */
  async function curl(args: string[], extra: Record<string, string> = {}) {
    const r = await client(['curl', '-q', '-sS', '-m', '10', '-w', '\n%{http_code}', ...args], extra);
    const lines = r.stdout.split('\n');
    return { code: r.code, status: Number(lines.pop()), body: lines.join('\n'), stderr: r.stderr };
  }

  /** Node's fetch through undici's ProxyAgent in the client namespace. */
  async function fetchVia(url: string, ...flags: string[]) {
    const r = await client([process.execPath, FETCH, PROXY, url, ...flags]);
    expect(r.stdout, r.stderr).toMatch(/^\{/);
    return { code: r.code, ...(JSON.parse(r.stdout) as { status?: number; body?: string; via?: string | null; error?: string; cause?: string }) };
  }

  const served = (): Served[] => server.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Served);
  /** The file server's log lines matching `pred`, once at least `min` exist (bounded wait). */
  async function requests(pred: (s: Served) => boolean, min = 1): Promise<Served[]> {
    let got = served().filter(pred);
    for (let i = 0; i < 40 && got.length < min; i++) { await sleep(50); got = served().filter(pred); }
    return got;
  }
  const proxyLines = () => proxy.output().split('\n').filter((l) => l.includes('"msg":"request"') || l.includes('"msg":"tunnel"')).map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    await ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'erl-clients-'));
    home = join(tmp, 'home');
    const www = join(tmp, 'www');
    for (const d of [home, www]) mkdirSync(d);

    // A CA and a server certificate for SECURE, signed by it.
    ca = join(tmp, 'ca.crt');
    const [caKey, key, csr, crt, ext] = ['ca.key', 'server.key', 'server.csr', 'server.crt', 'server.ext'].map((f) => join(tmp, f)) as [string, string, string, string, string];
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await local(['openssl', 'req', '-x509', ...ec, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=egress-router lab CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await local(['openssl', 'req', '-new', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${SECURE}`]);
    writeFileSync(ext, `subjectAltName=DNS:${SECURE}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    await local(['openssl', 'x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', crt]);

    // A bare repository with one commit, ready for dumb HTTP.
    const who = { GIT_AUTHOR_NAME: 'lab', GIT_AUTHOR_EMAIL: 'lab@example.invalid', GIT_COMMITTER_NAME: 'lab', GIT_COMMITTER_EMAIL: 'lab@example.invalid' };
    const work = join(tmp, 'work');
    await local(['git', '-c', 'init.defaultBranch=main', 'init', '-q', work]);
    writeFileSync(join(work, 'README.txt'), README);
    await local(['git', '-C', work, 'add', 'README.txt']);
    await local(['git', '-C', work, 'commit', '-q', '-m', 'lab repository'], who);
    await local(['git', 'clone', '-q', '--bare', work, join(www, 'repo.git')]);
    await local(['git', '-C', join(www, 'repo.git'), 'update-server-info']);

    // A PEP 503 simple index with one wheel. The interpreter is resolved once
    // (a pyenv shim would look for its root under our temporary HOME).
    python = (await sh(['python3', '-c', 'import sys; print(sys.executable)'], { timeoutMs: 15_000 })).stdout.trim();
    expect(python).toMatch(/^\//);
    mkdirSync(join(www, 'packages'));
    mkdirSync(join(www, 'simple', PKG), { recursive: true });
    await local([python, '-c', WHEEL_PY, join(www, 'packages', WHEEL), PKG, '1.0']);
    wheelSha = sha256(readFileSync(join(www, 'packages', WHEEL)));
    writeFileSync(join(www, 'simple', 'index.html'), `<!DOCTYPE html>\n<html><body><a href="${PKG}/">${PKG}</a></body></html>\n`);
    writeFileSync(join(www, 'simple', PKG, 'index.html'),
      `<!DOCTYPE html>\n<html><body><a href="../../packages/${WHEEL}#sha256=${wheelSha}">${WHEEL}</a></body></html>\n`);

    lab = await createLab();
    dns = await startDnsServer(lab, { address: ADDR.dns, zone: ZONE });
    server = await lab.spawnReady('inet', [process.execPath, FILE_SERVER, '--dir', www, '--http', `${A}:80`, '--https', `${A}:443`, '--cert', crt, '--key', key], 'ready');
    lab.writeResolvConf('pod', ADDR.dns);
    // Clients resolve nothing themselves: a resolver that refuses at once.
    lab.writeResolvConf('client', '127.0.0.1');
    const init = await lab.setupRouter({ EGRESS_ROUTER_MODE: 'http-proxy' });
    expect(init.code, init.stderr).toBe(0);
    proxy = await lab.spawnReady('pod', [process.execPath, BIN, 'http-proxy'], 'http-proxy listening',
      { env: { ...process.env, EGRESS_HTTP_PROXY_DESTINATION: POLICY } });
  }, 60_000);
  afterAll(async () => {
    await dns?.stop();
    await lab?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('curl, HTTPS through CONNECT with -x and with https_proxy: the certificate verifies end to end, the server sees the egress IP', async () => {
    const url = `https://${SECURE}/whoami`;
    const viaFlag = await curl(['--cacert', ca, '-x', PROXY, url]);
    expect(viaFlag, viaFlag.stderr).toMatchObject({ code: 0, status: 200 });
    expect(viaFlag.body).toMatch(sees(443));
    const viaEnv = await curl(['--cacert', ca, url], { https_proxy: `${PROXY}/` });
    expect(viaEnv, viaEnv.stderr).toMatchObject({ code: 0, status: 200 });
    expect(viaEnv.body).toMatch(sees(443));
    // The proxy only tunnels: without our CA the server's certificate is not trusted.
    const untrusted = await curl(['-x', PROXY, url]);
    expect(untrusted.code).toBe(60);
    expect(await requests((s) => s.tls && s.path === '/whoami' && s.ua?.startsWith('curl/') === true, 2)).toEqual([
      expect.objectContaining({ from: ADDR.source, status: 200, host: SECURE }),
      expect.objectContaining({ from: ADDR.source, status: 200, host: SECURE }),
    ]);
  });

  // Both fetches: undici's own, and Node's built-in one (its bundled undici)
  // given the package's ProxyAgent as dispatcher, as applications do.
  for (const [name, impl] of [['undici fetch', []], ['Node global fetch', ['--global']]] as const) {
    it(`${name} through undici ProxyAgent: http (CONNECT tunnel and absolute-form) and https`, async () => {
      const tunnel = await fetchVia(`http://${FILES}/whoami`, ...impl);
      expect(tunnel).toMatchObject({ code: 0, status: 200, via: null });
      expect(tunnel.body).toMatch(sees(80));
      // Absolute-form through the proxy's forwarder, which adds its Via.
      const plain = await fetchVia(`http://${FILES}/whoami`, '--no-tunnel', ...impl);
      expect(plain).toMatchObject({ code: 0, status: 200, via: '1.1 egress-router' });
      expect(plain.body).toMatch(sees(80));
      const tls = await fetchVia(`https://${SECURE}/whoami`, '--ca', ca, ...impl);
      expect(tls).toMatchObject({ code: 0, status: 200, via: null });
      expect(tls.body).toMatch(sees(443));
    });
  }

  it('git clone over dumb HTTP through http.proxy gets the committed file; every request left from the egress IP', async () => {
    const dest = join(tmp, 'clone');
    const r = await client(['git', '-c', `http.proxy=${PROXY}`, 'clone', `http://${FILES}/repo.git`, dest]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(dest, 'README.txt'), 'utf8')).toBe(README);
    const log = (await sh(['git', '-C', dest, 'log', '--format=%s'], { env: env(), timeoutMs: 10_000 })).stdout;
    expect(log).toBe('lab repository\n');
    const gets = await requests((s) => !s.tls && s.path.startsWith('/repo.git/') && s.ua?.startsWith('git/') === true, 3);
    expect(gets.map((s) => s.path)).toContain('/repo.git/info/refs?service=git-upload-pack');
    expect(gets.map((s) => [s.from, s.host, s.status])).toEqual(gets.map(() => [ADDR.source, FILES, 200]));
  });

  it('git clone over HTTPS with https_proxy in the environment (CONNECT, certificate checked by git)', async () => {
    const dest = join(tmp, 'clone-tls');
    const r = await client(['git', 'clone', `https://${SECURE}/repo.git`, dest], { https_proxy: `${PROXY}/`, GIT_SSL_CAINFO: ca });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(dest, 'README.txt'), 'utf8')).toBe(README);
    const gets = await requests((s) => s.tls && s.path.startsWith('/repo.git/') && s.ua?.startsWith('git/') === true, 3);
    expect(gets.map((s) => [s.from, s.host, s.status])).toEqual(gets.map(() => [ADDR.source, SECURE, 200]));
  });

  /** pip download of PKG into a fresh folder: the wheel must arrive intact. */
  async function pipDownload(dest: string, args: string[], extra: Record<string, string> = {}) {
    const r = await client([python, '-m', 'pip', 'download', '--no-deps', '--no-cache-dir', '--disable-pip-version-check', '--no-input',
      '-d', dest, ...args, PKG], extra, 30_000);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(readdirSync(dest)).toEqual([WHEEL]);
    expect(sha256(readFileSync(join(dest, WHEEL)))).toBe(wheelSha);
  }

  // Plain http as an index needs --trusted-host: pip otherwise ignores an
  // insecure index ("not a trusted or secure host") and finds nothing.
  it('pip download from a simple index through --proxy: the wheel arrives with the same sha256', async () => {
    await pipDownload(join(tmp, 'pip'), ['--index-url', `http://${FILES}/simple/`, '--trusted-host', FILES, '--proxy', PROXY]);
    const gets = await requests((s) => !s.tls && s.ua?.startsWith('pip/') === true, 2);
    expect(gets.map((s) => `${s.path} ${s.status}`)).toEqual([`/simple/${PKG}/ 200`, `/packages/${WHEEL} 200`]);
    expect(gets.map((s) => [s.from, s.host])).toEqual(gets.map(() => [ADDR.source, FILES]));
  });

  it('pip download from an HTTPS index with https_proxy in the environment (CONNECT, --cert)', async () => {
    await pipDownload(join(tmp, 'pip-tls'), ['--index-url', `https://${SECURE}/simple/`, '--cert', ca], { https_proxy: `${PROXY}/` });
    const gets = await requests((s) => s.tls && s.ua?.startsWith('pip/') === true, 2);
    expect(gets.map((s) => `${s.path} ${s.status}`)).toEqual([`/simple/${PKG}/ 200`, `/packages/${WHEEL} 200`]);
    expect(gets.map((s) => [s.from, s.host])).toEqual(gets.map(() => [ADDR.source, SECURE]));
  });

  it('wget with http_proxy in the environment', async () => {
    const r = await client(['wget', '--no-config', '-q', '-T', '10', '-t', '1', '-O', '-', `http://${FILES}/whoami`], { http_proxy: `${PROXY}/` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(sees(80));
    expect(await requests((s) => s.path === '/whoami' && s.ua?.startsWith('Wget/') === true)).toEqual([expect.objectContaining({ from: ADDR.source, host: FILES })]);
  });

  it('a denied name fails clearly: curl gets the 403 and its rule (plain and CONNECT), git exits non-zero with the 403', async () => {
    const plain = await curl(['-x', PROXY, `http://${BLOCKED}/whoami`]);
    expect(plain).toMatchObject({ code: 0, status: 403, body: `${DENIED_BODY}\n` });
    const tunnel = await curl(['--cacert', ca, '-x', PROXY, `https://${BLOCKED}/whoami`]);
    expect(tunnel.code).toBe(56); // CONNECT refused
    expect(tunnel.stderr).toMatch(/CONNECT tunnel failed, response 403/);
    const g = await client(['git', '-c', `http.proxy=${PROXY}`, 'clone', `http://${BLOCKED}/repo.git`, join(tmp, 'denied')]);
    expect(g.code).not.toBe(0);
    expect(g.stderr).toMatch(/The requested URL returned error: 403/);
    // Nothing reached the server under that name, though it resolves to the same address.
    expect(served().filter((s) => s.host?.startsWith(BLOCKED))).toEqual([]);
  });

  it('the proxy logged each client by name, with the rule that allowed or denied it', async () => {
    let lines = proxyLines();
    for (let i = 0; i < 40 && !lines.some((l) => l.method === 'CONNECT' && l.target === `${BLOCKED}:443`); i++) { await sleep(50); lines = proxyLines(); }
    expect(lines.find((l) => l.method === 'CONNECT' && l.target === `${SECURE}:443` && l.status === 200)).toMatchObject({ client: ADDR.client, decision: 'allow', rule: SECURE, upstream: `${A}:443` });
    expect(lines.find((l) => l.method === 'GET' && l.target === `${FILES}:80/simple/${PKG}/`)).toMatchObject({ decision: 'allow', rule: FILES, upstream: `${A}:80`, status: 200 });
    expect(lines.find((l) => l.method === 'CONNECT' && l.target === `${BLOCKED}:443`)).toMatchObject({ decision: 'deny', rule: `!${BLOCKED}`, status: 403 });
    // The proxy, not the clients, asked the lab's DNS server; the clients'
    // own resolver answers nothing (the premise of every test above: a
    // client that resolved a name itself would have failed).
    expect(dns.queries().some((q) => q.startsWith(`query ${FILES} A `))).toBe(true);
    const direct = await curl([`http://${FILES}/whoami`]);
    expect(direct.code, direct.stderr).toBe(6); // could not resolve host
  });
});
