/**
 * A configuration error carries the exact one-line message an operator sees.
 * Messages that the OpenShift images define are reproduced verbatim: runbooks
 * and alerts match on them.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function die(message: string): never {
  throw new ConfigError(message);
}
