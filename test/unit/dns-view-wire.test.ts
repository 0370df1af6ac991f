// The DNS view's wire parsing: names, chains, addresses, SERVFAIL, and malformed input.
import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import { answerFacts, ipv6, MalformedError, readName, readQuestion, servfail, hasCname } from '../../src/engines/firewall/dns-view/wire.js';

const response = (answers: dnsPacket.Answer[], name = 'Alias.Test') => dnsPacket.encode({
  type: 'response', id: 7, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
  questions: [{ type: 'A', name, class: 'IN' }], answers,
});

describe('dns view wire', () => {
  it('follows a CNAME chain in any order and keeps only records on it', () => {
    const buf = response([
      { type: 'A', name: 'www.watched.test', ttl: 30, data: '192.0.2.1' },
      { type: 'CNAME', name: 'alias.test', ttl: 300, data: 'mid.test' },
      { type: 'A', name: 'unrelated.test', ttl: 5, data: '198.51.100.66' },
      { type: 'CNAME', name: 'MID.test', ttl: 300, data: 'www.watched.test' },
      { type: 'AAAA', name: 'www.watched.test', ttl: 20, data: '2001:db8::1' },
    ]);
    const q = readQuestion(buf);
    expect(q.name).toBe('Alias.Test');
    expect(hasCname(buf, q.end)).toBe(true);
    expect(answerFacts(buf, q.end, 'alias.test')).toEqual({
      chain: ['alias.test', 'mid.test', 'www.watched.test'],
      addresses: [{ address: '192.0.2.1', family: 4 }, { address: '2001:db8::1', family: 6 }],
      ttl: 20,
    });
  });
  it('a CNAME loop ends', () => {
    const buf = response([{ type: 'CNAME', name: 'alias.test', ttl: 1, data: 'b.test' }, { type: 'CNAME', name: 'b.test', ttl: 1, data: 'alias.test' }]);
    expect(answerFacts(buf, readQuestion(buf).end, 'alias.test').chain).toEqual(['alias.test', 'b.test']);
  });
  it('prints IPv6 as Node does', () => {
    for (const a of ['2001:db8::1', '::', '::1', 'fe80::1:0:0:1', '2001:db8:0:0:1::', '1:2:3:4:5:6:7:8', '1:0:0:2:0:0:0:3', 'ff02::1:ff00:1']) {
      const b = Buffer.alloc(16);
      const expanded = a.replace('::', ':' + '0:'.repeat(8 - a.split(':').filter(Boolean).length)).replace(/^:|:$/g, '');
      expanded.split(':').forEach((g, i) => b.writeUInt16BE(parseInt(g || '0', 16), i * 2));
      expect(ipv6(b, 0)).toBe(new URL(`http://[${a}]/`).hostname.slice(1, -1));
    }
  });
  it('SERVFAIL keeps the ID, question, opcode and RD', () => {
    const qbuf = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'AAAA', name: 'x.test', class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as unknown as dnsPacket.Answer] });
    const p = dnsPacket.decode(servfail(qbuf, readQuestion(qbuf).end));
    expect(p).toMatchObject({ id: 4242, type: 'response', rcode: 'SERVFAIL', flag_rd: true, questions: [{ type: 'AAAA', name: 'x.test' }], answers: [], additionals: [] });
  });
  it('refuses malformed names without looping', () => {
    const head = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    const cases = [
      Buffer.from([1, 2, 3]), // shorter than a header
      Buffer.concat([head, Buffer.from([0xc0, 12, 0, 1, 0, 1])]), // pointer to itself
      Buffer.concat([head, Buffer.from([1, 0x61, 0xc0, 12, 0, 1, 0, 1])]), // pointer back into its own labels
      Buffer.concat([head, Buffer.from([9, 0x61])]), // label past the end
      Buffer.concat([head, Buffer.from([0x40, 0, 0, 1, 0, 1])]), // extended label type
      Buffer.concat([head, Buffer.from([1, 0x61, 0, 0])]), // truncated question
      Buffer.concat([head, Buffer.from(Array.from({ length: 64 }, () => [63, ...Buffer.alloc(63, 0x61)]).flat()), Buffer.from([0, 0, 1, 0, 1])]), // name too long
    ];
    for (const c of cases) expect(() => readQuestion(c), c.toString('hex')).toThrow(MalformedError);
    expect(() => readName(Buffer.from([0xc0]), 0)).toThrow(MalformedError);
  });
});
