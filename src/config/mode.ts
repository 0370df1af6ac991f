import { die } from './errors.js';

export const MODES = ['init', 'legacy', 'http-proxy', 'dns-proxy', 'unit-test'] as const;
export type Mode = (typeof MODES)[number];

/** EGRESS_ROUTER_MODE; unset or empty means `legacy`, as in the image. */
export function parseMode(value: string | undefined): Mode {
  const v = value ?? '';
  if (v === '') return 'legacy';
  if ((MODES as readonly string[]).includes(v)) return v as Mode;
  return die(`Unrecognized EGRESS_ROUTER_MODE '${v}'`);
}
