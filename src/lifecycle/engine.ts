/**
 * The one lifecycle every engine has (redirect, HTTP proxy, DNS proxy,
 * firewall), after undici's dispatchers: started by its factory, then
 * reconfigure / ready / stats, close() to drain, destroy() to cut what is
 * left. The runner (runner.ts) drives it; an engine never handles a signal.
 */

/** Counters are plain numbers the engine bumps on its hot path; metrics read them at scrape time. */
export interface ListenerStats {
  /** Low-cardinality name: `http-proxy:8080`, `dns-proxy:5432`. */
  readonly listener: string;
  accepted: number;
  active: number;
  /** Refused connections or requests by reason (`limit`, `client`, `denied`, `no-address`...). */
  readonly refused: Record<string, number>;
  /** Bytes from clients and to clients (counted when a connection ends). */
  bytesIn: number;
  bytesOut: number;
}

export interface EngineStats {
  readonly listeners: readonly ListenerStats[];
  /** Policy decisions: rule is the rule's position (1-based) or `default`. */
  readonly decisions?: readonly { readonly rule: string; readonly action: 'allow' | 'deny'; readonly count: number }[];
  /** Per configured name (bounded by the configuration). */
  readonly dns?: readonly { readonly name: string; readonly lookups: number; readonly failures: number; readonly addresses: number }[];
  /** Backend addresses by state, per listener. */
  readonly backends?: readonly { readonly listener: string; readonly up: number; readonly down: number }[];
  /** The firewall's DNS view counters by event (queries, learned, servfail_timeout, ...), plain numbers. */
  readonly dnsView?: Readonly<Record<string, number>>;
}

export type ReloadResult =
  | { readonly ok: true; readonly summary: string }
  | { readonly ok: false; readonly error: string };

export interface Engine {
  readonly name: string;
  /**
   * The `*_FILE` this engine follows and the content it started from (none:
   * nothing to follow); `read` and `watchDir` for what is not one text file
   * (the firewall's policy folder, followed as a digest).
   */
  readonly follows?: {
    readonly varName: string; readonly path: string; readonly text: string;
    readonly read?: (path: string) => Promise<string>; readonly watchDir?: string;
  };
  /**
   * Validate `text` (the followed file's new content) and apply it atomically,
   * or reject it with the one error line and keep running as before.
   */
  reconfigure(text: string): Promise<ReloadResult>;
  /** What is not ready yet (empty: ready). */
  missing(): string[];
  /** Read at scrape time; a promise where the numbers live elsewhere (the firewall's nft counters). */
  stats(): EngineStats | Promise<EngineStats>;
  /** Drain: stop accepting, let open connections finish; resolves when none are left. */
  close(): Promise<void>;
  /** Cut whatever is still open, now. */
  destroy(): void;
}

/** One error line from anything thrown while validating or applying. */
export function errorLine(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
