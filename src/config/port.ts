import { die } from './errors.js';

/** Ports are validated the way the OpenShift scripts do, with their message. */
export function parsePort(s: string): number {
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) {
    die(`Invalid port: ${s}, must be in the range 1 to 65535`);
  }
  return Number(s);
}
