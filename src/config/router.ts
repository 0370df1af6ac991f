/**
 * The router part's configuration from the environment: mode, deployment
 * options, the egress source and gateway, and (redirect modes) the
 * destinations. `routerConfig` is what both `run` and `check` call, so they
 * agree; it reads EGRESS_DESTINATION(_FILE) only in the modes that use it and
 * never the proxies' variables.
 */
import { destinationValue, type Env } from './env.js';
import { parseMode, type Mode } from './mode.js';
import { OPTION_VARS, parseOptions, type RouterOptions } from './options.js';
import { parseGateway, parseRedirectDestinations, parseSource, type RedirectConfig, type Source } from './redirect.js';

/** The --help table of the router commands: every variable this part reads. */
export const ROUTER_VARS: Record<string, string> = {
  EGRESS_ROUTER_MODE: 'init | legacy (default) | http-proxy | dns-proxy | unit-test',
  EGRESS_SOURCE: 'the egress IP, IP or IP/len, put on macvlan0',
  EGRESS_GATEWAY: 'the gateway of the egress network',
  EGRESS_DESTINATION: 'redirect lines: "<port> <tcp|udp> <ip> [<remote_port>]", last line may be a fallback "<ip>"',
  EGRESS_DESTINATION_FILE: 'read EGRESS_DESTINATION from this file instead (a mounted ConfigMap)',
  EGRESS_ROUTER_DEBUG: 'set to log debug detail',
  ...OPTION_VARS,
};

export interface RouterConfig {
  readonly mode: Mode;
  readonly debug: boolean;
  readonly options: RouterOptions;
  readonly source: Source;
  readonly gateway: string;
  /** Redirect modes (init, legacy, unit-test) only. */
  readonly redirect: RedirectConfig | undefined;
  /** EGRESS_DESTINATION_FILE when the destinations came from it (legacy mode follows it). */
  readonly destinationFile: string | undefined;
  /** The EGRESS_DESTINATION text the redirect was parsed from (a file watcher's baseline). */
  readonly destinationText: string | undefined;
}

export function routerConfig(env: Env): RouterConfig {
  const mode = parseMode(env.EGRESS_ROUTER_MODE);
  const options = parseOptions(env);
  const debug = !!env.EGRESS_ROUTER_DEBUG;
  if (mode === 'http-proxy' || mode === 'dns-proxy') {
    // These modes only set up the network; EGRESS_DESTINATION is not read.
    const source = parseSource(env.EGRESS_SOURCE);
    return { mode, debug, options, source, gateway: parseGateway(env.EGRESS_GATEWAY, source), redirect: undefined, destinationFile: undefined, destinationText: undefined };
  }
  const { redirect, text } = redirectFrom(env);
  const destinationFile = env.EGRESS_DESTINATION_FILE || undefined;
  return { mode, debug, options, source: redirect.source, gateway: redirect.gateway, redirect, destinationFile, destinationText: text };
}

/** What `render` (and mode unit-test) prints: the redirect contract, whatever the mode. */
export function renderConfig(env: Env): { redirect: RedirectConfig; options: RouterOptions } {
  const { redirect } = redirectFrom(env);
  return { redirect, options: parseOptions(env) };
}

function redirectFrom(env: Env): { redirect: RedirectConfig; text: string | undefined } {
  // The image's order: source, gateway, then the destinations (file read last).
  const source = parseSource(env.EGRESS_SOURCE);
  const gateway = parseGateway(env.EGRESS_GATEWAY, source);
  const text = destinationValue(env, 'EGRESS_DESTINATION');
  return { redirect: { source, gateway, destinations: parseRedirectDestinations(text, source.family) }, text };
}
