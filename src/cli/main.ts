/** The egress-router command line: wiring of commands, nothing else. */
import { Command } from 'commander';
import { ConfigError } from '../config/errors.js';
import { contextFrom } from './context.js';
import { registerRouter } from './router.js';
import { registerHttpProxy } from './http-proxy.js';
import { registerDnsProxy } from './dns-proxy.js';
import { registerCheck } from './check.js';
import { registerFirewall } from './firewall.js';
import { registerExplain } from './explain.js';
import { registerDaemon } from './daemon.js';

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<void> {
  const program = new Command('egress-router')
    .description('egress router: a reserved source IP on macvlan0 for traffic leaving the cluster')
    .option('--log-format <format>', 'json (default) or text', 'json')
    .showHelpAfterError(false);
  const ctx = () => contextFrom(program, env);
  registerRouter(program, ctx);
  registerCheck(program, ctx);
  registerHttpProxy(program, ctx);
  registerDnsProxy(program, ctx);
  registerFirewall(program, ctx);
  registerExplain(program, ctx);
  registerDaemon(program, ctx);
  try {
    await program.parseAsync(argv as string[]);
  } catch (e) {
    // One line on stderr, non-zero exit: the contract operators' alerts rely on.
    process.stderr.write(`${e instanceof ConfigError ? e.message : (e as Error).message ?? String(e)}\n`);
    process.exitCode = 1;
  }
}
