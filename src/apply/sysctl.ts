/** sysctls of the daemon's own network namespace, through /proc/sys. */
import { readFile, writeFile } from 'node:fs/promises';

const path = (key: string) => '/proc/sys/' + key.replace(/\./g, '/');

export async function getSysctl(key: string): Promise<string | undefined> {
  try {
    return (await readFile(path(key), 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** Write only when different, so restarts do not churn. */
export async function setSysctl(key: string, value: string): Promise<boolean> {
  if ((await getSysctl(key)) === value) return false;
  await writeFile(path(key), value);
  return true;
}
