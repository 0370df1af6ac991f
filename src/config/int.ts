/**
 * The one integer parser behind every numeric variable and flag (ports,
 * limits, table ids, marks), and the one for durations in seconds. Each caller
 * words its own message: the OpenShift contract fixes some of them.
 */

/** Decimal digits (or also 0x-hex when `hex`) within [min, max]; undefined otherwise. */
export function parseInteger(text: string, min: number, max: number, hex = false): number | undefined {
  if (!(hex ? /^(0x[0-9a-f]+|\d+)$/i : /^\d+$/).test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

/** A decimal number of seconds (fractions allowed: 0.5), at least min; undefined otherwise. */
export function parseSeconds(text: string, min: number): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min ? n : undefined;
}
