/**
 * systemd's notify protocol (sd_notify): `READY=1`, `RELOADING=1`,
 * `STOPPING=1`, `STATUS=...`, `WATCHDOG=1` as datagrams to the unix socket
 * named by NOTIFY_SOCKET.
 *
 * Why an addon: Node's `dgram` has no unix datagram type, and NOTIFY_SOCKET is
 * one. The alternatives were worse: spawning `systemd-notify` sends from a
 * child PID, so the unit would need NotifyAccess=all and systemd may not
 * attribute the message to the service once the child has exited; a Python
 * or socat helper is the same plus another runtime. `unix-dgram` (a small
 * C++ addon, built at install with npm_config_nodedir=/usr, see
 * .npmrc) sends from the main PID, so the units say NotifyAccess=main. It is
 * an optional dependency: without it the daemon still runs and says once that
 * systemd will not hear READY (Type=notify units then time out: use
 * Type=simple there).
 */
import { createRequire } from 'node:module';
import type { Logger } from '../observe/log.js';

export interface Notifier {
  /** Sends `KEY=value` lines as one datagram; no-op without NOTIFY_SOCKET. */
  send(...lines: string[]): void;
  /** Sends WATCHDOG=1 at half the interval systemd asked for (WATCHDOG_USEC); returns a stop function. */
  startWatchdog(): () => void;
  readonly enabled: boolean;
}

interface DgramSocket { send(buf: Buffer, off: number, len: number, path: string, cb: (e?: Error) => void): void; close(): void; on(ev: string, f: (e: Error) => void): void }

export function createNotifier(env: NodeJS.ProcessEnv, log: Logger): Notifier {
  const path = env.NOTIFY_SOCKET;
  const off: Notifier = { send() {}, startWatchdog: () => () => {}, enabled: false };
  if (!path) return off;
  if (path.startsWith('@')) {
    log.warn({ socket: path }, 'abstract NOTIFY_SOCKET is not supported by the unix-dgram addon; systemd will not be notified');
    return off;
  }
  let sock: DgramSocket;
  try {
    const unix = createRequire(import.meta.url)('unix-dgram') as { createSocket(t: 'unix_dgram'): DgramSocket };
    sock = unix.createSocket('unix_dgram');
    sock.on('error', (e) => log.warn({ err: e.message }, 'notify socket error'));
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'the unix-dgram addon is not installed: systemd will not be notified (READY, RELOADING, STOPPING)');
    return off;
  }
  const send = (...lines: string[]) => {
    const buf = Buffer.from(lines.join('\n'));
    sock.send(buf, 0, buf.length, path, (e) => { if (e) log.warn({ err: e.message, socket: path }, 'notify failed'); });
  };
  return {
    enabled: true,
    send,
    startWatchdog() {
      const usec = Number(env.WATCHDOG_USEC);
      const pid = env.WATCHDOG_PID;
      if (!usec || (pid && Number(pid) !== process.pid)) return () => {};
      const t = setInterval(() => send('WATCHDOG=1'), Math.max(usec / 2000, 100));
      t.unref();
      return () => clearInterval(t);
    },
  };
}
