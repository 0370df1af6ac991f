/**
 * Reading the environment. Each destination list may come from a file
 * (a mounted ConfigMap) named by `<VAR>_FILE`; the file wins over the variable.
 * This is the only module of config/ that touches the outside world, and it
 * reads a file only when the part that owns the variable asks for it.
 */
import { readFileSync } from 'node:fs';
import { die } from './errors.js';

export type Env = Readonly<Record<string, string | undefined>>;

export const DESTINATION_VARS = [
  'EGRESS_DESTINATION',
  'EGRESS_HTTP_PROXY_DESTINATION',
  'EGRESS_DNS_PROXY_DESTINATION',
] as const;

export type DestinationVar = (typeof DESTINATION_VARS)[number];

/** The value of a destination variable, reading `<VAR>_FILE` when set. */
export function destinationValue(env: Env, name: DestinationVar): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readDestinationFile(`${name}_FILE`, file);
  return env[name];
}

export function readDestinationFile(varName: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    return die(`${varName} '${path}' cannot be read: ${code}`);
  }
}
