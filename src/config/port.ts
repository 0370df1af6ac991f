import { die } from './errors.js';
import { parseInteger } from './int.js';

/** Ports are validated the way the OpenShift scripts do, with their message. */
export function parsePort(s: string): number {
  return parseInteger(s, 1, 65535) ?? die(`Invalid port: ${s}, must be in the range 1 to 65535`);
}
