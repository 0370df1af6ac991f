// DnsView, the one object the firewall starts: forwarders, matcher, learner
// and the nft rules that go with them, on loopback with a fake element writer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { startDnsServer, type DnsServer } from '../lab/dns.js';
import { DnsView } from '../../src/engines/firewall/dns-view/index.js';

let dns: DnsServer;
let upPort: number;

function ask(port: number, name: string): Promise<dnsPacket.Packet> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => { s.close(); reject(new Error('no answer')); }, 2000);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(dnsPacket.decode(m)); });
    s.send(dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), port, '127.0.0.1');
  });
}

beforeAll(async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  upPort = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  dns = await startDnsServer(null, { address: '127.0.0.1', port: upPort, zone: {
    'www.watched.test': { A: ['192.0.2.10'], ttl: 7 }, 'other.test': { A: ['198.51.100.1'], ttl: 9 },
  } });
});
afterAll(async () => { await dns?.stop(); });

describe('DnsView', () => {
  it('starts a catch-all and a per-server forwarder that learn through one learner, and gives the nft rules for its ports', async () => {
    const writes: Array<{ elements: unknown; timeout: number }> = [];
    const view = await DnsView.start({
      table: { family: 'inet', name: 't' }, host: '127.0.0.1', port: 0, nameservers: [{ address: '127.0.0.1', port: upPort }],
      byServer: [{ address: '127.0.0.1', port: 0, serverPort: upPort }],
      ruleNames: ['www.watched.test'], setsOf: (r) => (r === 'www.watched.test' ? { 4: 'r1_4', 6: 'r1_6' } : undefined),
      write: async (elements, timeout) => { writes.push({ elements, timeout }); },
    });
    try {
      const [catchAll, perServer] = view.ports as [number, number];
      expect((await ask(catchAll, 'www.watched.test')).answers?.[0]?.data).toBe('192.0.2.10');
      expect(writes).toEqual([{ elements: [{ set: 'r1_4', address: '192.0.2.10' }], timeout: 37 }]);
      // The second forwarder shares the learner: the address is already there.
      expect((await ask(perServer, 'www.watched.test')).answers?.[0]?.data).toBe('192.0.2.10');
      expect(writes).toHaveLength(1);
      expect(view.stats[catchAll]).toMatchObject({ queries: 1, learned: 1 });
      expect(view.stats[perServer]).toMatchObject({ queries: 1, learned: 1, learned_covered: 1 });
      expect(view.learned().map((e) => [e.set, e.address])).toEqual([['r1_4', '192.0.2.10']]);

      view.setPolicy(['other.test'], () => ({ 4: 'r2_4' }));
      await ask(catchAll, 'other.test');
      expect(writes[1]).toEqual({ elements: [{ set: 'r2_4', address: '198.51.100.1' }], timeout: 39 });

      const text = (rules: { pieces: readonly { text: string }[] }[]) => rules.map((r) => r.pieces.map((p) => p.text).join(' '));
      expect(text(view.redirectRules({ 4: ['10.128.0.0/24'], 6: [] }))).toEqual([
        `ip saddr 10.128.0.0/24 ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport 53 counter redirect to :${perServer}`,
        `ip saddr 10.128.0.0/24 meta l4proto { tcp, udp } th dport 53 counter redirect to :${catchAll}`,
      ]);
      expect(text(view.inputGuard())[0]).toContain(`th dport { ${[catchAll, perServer].sort((a, b) => a - b).join(', ')} } ct status ! dnat`);
    } finally {
      await view.close();
    }
  });
});
