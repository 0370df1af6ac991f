/**
 * EGRESS_FASTPATH: whether the user-space engines (the HTTP proxy's CONNECT
 * tunnels, the DNS proxy's user-space path) accept, connect and relay in the
 * native fast path (native/fastpath, engines/fastpath/) or on net.Socket.
 * 'auto' (default): the fast path when its addon is built, else net.Socket;
 * '1' requires it (start fails without it); '0' never uses it.
 */
import type { Env } from './env.js';
import { die } from './errors.js';
// Whether the addon loads is the one fact about the machine this variable
// depends on: asked here, so `check <part>` and starting the part agree.
import { useFastpath } from '../engines/fastpath/index.js';

export type FastpathWanted = 'auto' | 'on' | 'off';

export const FASTPATH_HELP =
  "'auto' (default): accept, connect and relay in the native fast path when its addon is built, else on Node sockets; '1': required; '0': Node sockets only";

/** EGRESS_FASTPATH; '1' on a machine without the addon is refused (one line). */
export function parseFastpath(env: Env): FastpathWanted {
  const v = env.EGRESS_FASTPATH;
  if (v === undefined || v === '' || v === 'auto') return 'auto';
  if (v === '1' || v === 'true') {
    try { useFastpath('on'); } catch (e) { die((e as Error).message); }
    return 'on';
  }
  if (v === '0' || v === 'false') return 'off';
  return die(`EGRESS_FASTPATH '${v}' is invalid, must be 'auto', '1' or '0'`);
}
