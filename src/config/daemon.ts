/**
 * `egress-router daemon`: one process sets up the network and runs the
 * engine of EGRESS_ROUTER_MODE (redirect for legacy, the HTTP proxy, the DNS
 * proxy), and the egress firewall too when EGRESS_FIREWALL_POLICY is set.
 * Every part it will run is validated here, before anything is
 * touched, by the same functions `check <part>` and the parts' own commands
 * call, so a bad proxy rule never leaves a half-set-up network behind.
 */
import { dnsProxyConfig, type DnsProxyConfig } from './dns-proxy-options.js';
import type { Env } from './env.js';
import { die } from './errors.js';
import { firewallConfig, type FirewallConfig } from './firewall.js';
import { httpProxyConfig, type HttpProxyConfig } from './http-proxy-options.js';
import { routerConfig, type RouterConfig } from './router.js';
import { serviceConfig, type ServiceConfig } from './service.js';

export interface DaemonConfig {
  readonly router: RouterConfig;
  readonly service: ServiceConfig;
  readonly httpProxy: HttpProxyConfig | undefined;
  readonly dnsProxy: DnsProxyConfig | undefined;
  readonly firewall: FirewallConfig | undefined;
}

export function daemonConfig(env: Env): DaemonConfig {
  const router = routerConfig(env);
  if (router.mode === 'init' || router.mode === 'unit-test') {
    die(`EGRESS_ROUTER_MODE '${router.mode}' does not run a daemon: use 'egress-router run' (the image entrypoint)`);
  }
  const httpProxy = router.mode === 'http-proxy' ? httpProxyConfig(env) : undefined;
  const dnsProxy = router.mode === 'dns-proxy' ? dnsProxyConfig(env) : undefined;
  const firewall = env.EGRESS_FIREWALL_POLICY ? firewallConfig(env) : undefined;
  return { router, service: serviceConfig(env), httpProxy, dnsProxy, firewall };
}
