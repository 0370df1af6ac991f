/**
 * EGRESS_PLACEMENT, read by every part: the router (which network set-up),
 * and both proxies (host placement binds their outbound sockets to
 * EGRESS_SOURCE). One parser, so every part refuses a bad value with one line.
 */
import type { Env } from './env.js';
import { die } from './errors.js';
import { sourceOf } from './redirect.js';

export type Placement = 'pod' | 'host';

export function parsePlacement(env: Env): Placement {
  const placement = env.EGRESS_PLACEMENT || 'pod';
  if (placement !== 'pod' && placement !== 'host') die(`EGRESS_PLACEMENT '${placement}' is invalid, must be 'pod' or 'host'`);
  return placement;
}

/** A proxy's outbound bind address: EGRESS_SOURCE in host placement, none in a pod (the pod's routes do it). */
export function bindAddress(env: Env, placement: Placement): string | undefined {
  if (placement !== 'host') return undefined;
  const v = env.EGRESS_SOURCE ?? '';
  return sourceOf(v)?.address ?? die(`EGRESS_SOURCE '${v}' is not an IP address (host placement binds outbound sockets to it)`);
}
