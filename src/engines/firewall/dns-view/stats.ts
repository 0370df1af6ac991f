/** The DNS view's counters (plain numbers: a metrics exporter reads them as they are). */
export interface DnsViewStats {
  queries: number;
  udp_queries: number;
  tcp_queries: number;
  answers: number;
  /** Answers held for the hook and released after it resolved. */
  learned: number;
  /** Of those, released at once: the hook said the kernel already had every address (no update). */
  learned_covered: number;
  /** SERVFAIL because the hook overran its bound / failed / the upstream did not answer. */
  servfail_timeout: number;
  servfail_error: number;
  servfail_upstream: number;
  /** Client queries dropped as unparsable; upstream answers that did not match their query or parse. */
  malformed: number;
  malformed_upstream: number;
  dropped_overload: number;
  dropped_closing: number;
  upstream_strays: number;
  in_flight: number;
}

export const newStats = (): DnsViewStats => ({
  queries: 0, udp_queries: 0, tcp_queries: 0, answers: 0, learned: 0, learned_covered: 0, servfail_timeout: 0, servfail_error: 0, servfail_upstream: 0,
  malformed: 0, malformed_upstream: 0, dropped_overload: 0, dropped_closing: 0, upstream_strays: 0, in_flight: 0,
});
