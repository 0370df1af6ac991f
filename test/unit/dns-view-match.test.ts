// The DNS view's name matching: exact names and one-label wildcards.
import { describe, expect, it } from 'vitest';
import { compileMatcher } from '../../src/engines/firewall/dns-view/match.js';

describe('dns view name matcher', () => {
  const m = compileMatcher(['www.foo.com', '*.example.com', 'example.com', '*.Deep.Example.COM', 'dup.net', 'dup.net']);
  const table: Array<[string, string[] | undefined]> = [
    ['www.foo.com', ['www.foo.com']],
    ['WWW.Foo.Com.', ['www.foo.com']],
    ['foo.com', undefined],
    ['a.www.foo.com', undefined],
    ['a.example.com', ['*.example.com']],
    ['A.EXAMPLE.COM.', ['*.example.com']],
    ['example.com', ['example.com']],
    ['a.b.example.com', undefined],
    ['.example.com', undefined],
    ['x.deep.example.com', ['*.Deep.Example.COM']],
    ['deep.example.com', ['*.example.com']],
    ['y.x.deep.example.com', undefined],
    ['examplexcom', undefined],
    ['aexample.com', undefined],
    ['dup.net', ['dup.net']],
    ['', undefined],
  ];
  it.each(table)('%s -> %j', (name, want) => {
    expect(m.match(name)).toEqual(want);
  });
  it('a name under both an exact rule and a wildcard gets both', () => {
    const both = compileMatcher(['a.example.com', '*.example.com']);
    expect(both.match('a.example.com')).toEqual(['a.example.com', '*.example.com']);
  });
  it('an empty policy matches nothing', () => {
    expect(compileMatcher([]).match('a.example.com')).toBeUndefined();
    expect(compileMatcher([]).size).toBe(0);
  });
  it('refuses what is not a name or a one-label wildcard', () => {
    expect(() => compileMatcher(['*.'])).toThrow(/invalid/);
    expect(() => compileMatcher(['*.*.example.com'])).toThrow(/invalid wildcard/);
    expect(() => compileMatcher(['a*.example.com'])).toThrow(/invalid dns name/);
  });
});
