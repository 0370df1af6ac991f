import { expect } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';

/** The exact one-line message a configuration error carries. */
export function errorOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError, got a value');
}
