// The kernel path's reading of conntrack events (lines as conntrack -E printed them in the lab).
import { describe, expect, it } from 'vitest';
import { parseRefusal } from '../../src/engines/dns-proxy/refusals.js';

describe('parseRefusal', () => {
  it('reads a refused SYN: our port, and the address and port that refused', () => {
    expect(parseRefusal('[DESTROY] tcp      6 120 CLOSE src=10.128.0.20 dst=10.128.0.10 sport=44822 dport=8000 [UNREPLIED] src=203.0.113.11 dst=192.168.12.99 sport=9000 dport=44822'))
      .toEqual({ port: 8000, address: '203.0.113.11', remotePort: 9000 });
    expect(parseRefusal('[DESTROY] tcp      6 120 CLOSE src=fd00:128::20 dst=fd00:128::10 sport=1 dport=8100 [UNREPLIED] src=2001:db8:113::10 dst=2001:db8:12::99 sport=80 dport=1'))
      .toEqual({ port: 8100, address: '2001:db8:113::10', remotePort: 80 });
  });
  it('ignores flows that were answered, and other states', () => {
    expect(parseRefusal('[DESTROY] tcp      6 CLOSE src=10.128.0.20 dst=10.128.0.10 sport=1 dport=8000 src=203.0.113.11 dst=192.168.12.99 sport=9000 dport=1 [ASSURED]')).toBeUndefined();
    expect(parseRefusal('[DESTROY] tcp      6 SYN_SENT src=10.128.0.20 dst=10.128.0.10 sport=1 dport=8000 [UNREPLIED] src=203.0.113.11 dst=192.168.12.99 sport=9000 dport=1')).toBeUndefined();
    expect(parseRefusal('conntrack v1.4.7 (conntrack-tools): 0 flow events have been shown.')).toBeUndefined();
  });
});
