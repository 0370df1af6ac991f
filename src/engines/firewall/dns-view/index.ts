/**
 * The firewall's DNS view (issue 11): what the firewall engine plugs in.
 * See docs/dns-view.md.
 */
export { compileMatcher, normalizeName, type NameMatcher } from './match.js';
export { DnsViewForwarder, type DnsViewOptions, type LearnHook, type LearnedAddress } from './forwarder.js';
export type { DnsViewStats } from './stats.js';
export type { Server } from './upstream.js';
export { netlinkWrite, nftLearner, nftSessionWrite, type ElementWrite, type NftLearner, type NftLearnerOptions } from './learner.js';
export { DnsView, type DnsViewConfig, type SetsOf } from './view.js';
