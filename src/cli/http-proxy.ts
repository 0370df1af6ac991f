// Stub: the HTTP proxy command is registered here (issue 4).
import type { Command } from 'commander';
import type { CliContext } from './context.js';

export function registerHttpProxy(_program: Command, _ctx: () => CliContext): void {}
