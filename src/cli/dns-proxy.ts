// Stub: the DNS proxy command is registered here (issue 5).
import type { Command } from 'commander';
import type { CliContext } from './context.js';

export function registerDnsProxy(_program: Command, _ctx: () => CliContext): void {}
