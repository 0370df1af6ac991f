import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, infoWriter } from '../../src/observe/log.js';
import { createLineSink } from '../../src/observe/sink.js';

function capture() {
  const lines: string[] = [];
  return { lines, dest: { write: (s: string) => { lines.push(s); } } };
}
const withoutTime = (line: string) => { const o = JSON.parse(line); delete o.time; return JSON.stringify(o); };

describe('infoWriter', () => {
  it('writes the line pino writes, key for key, undefined fields left out', () => {
    const a = capture(), b = capture();
    const fields = { client: '10.0.0.1', method: 'GET', target: 'x.example:80/"q"\\\n', rule: undefined, status: 200, ms: 1.5, bad: Number.NaN };
    createLogger({ destination: a.dest }).info(fields, 'request');
    infoWriter(createLogger({ destination: b.dest }), 'request')(fields);
    expect(b.lines).toHaveLength(1);
    expect(b.lines[0]!.endsWith('}\n')).toBe(true);
    expect(withoutTime(b.lines[0]!)).toBe(withoutTime(a.lines[0]!));
    expect(JSON.parse(b.lines[0]!).time).toBeTypeOf('number');
  });

  it('honours the level', () => {
    const c = capture();
    infoWriter(createLogger({ level: 'warn', destination: c.dest }), 'request')({ a: '1' });
    expect(c.lines).toEqual([]);
  });
});

describe('createLineSink', () => {
  it('writes the lines of one event-loop turn together, after the turn', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'er-sink-'));
    const file = path.join(dir, 'out');
    const fd = fs.openSync(file, 'w');
    try {
      const sink = createLineSink(fd);
      sink.write('a\n');
      sink.write('b\n');
      expect(fs.readFileSync(file, 'utf8')).toBe('');
      await new Promise((r) => setImmediate(r));
      expect(fs.readFileSync(file, 'utf8')).toBe('a\nb\n');
      sink.write('é\n');
      let called = false;
      sink.flush(() => { called = true; });
      expect(called).toBe(true);
      expect(fs.readFileSync(file, 'utf8')).toBe('a\nb\né\n');
    } finally {
      fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true });
    }
  });
});
