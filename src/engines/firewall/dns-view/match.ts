/**
 * Which dnsName rules a DNS name falls under. Built once per policy: two Map
 * lookups per name (exact, then the parent of the leftmost label for
 * wildcards), never a scan of every rule, so a 1000-rule policy costs a query
 * what a 1-rule policy does.
 *
 * `*.example.com` matches exactly one leftmost label (a.example.com, not
 * example.com nor a.b.example.com), as OVN-Kubernetes' EgressFirewall does.
 * Case-insensitive; a trailing dot is ignored.
 */

export interface NameMatcher {
  /** The rule names (as the policy spells them) that `name` falls under; undefined when none. */
  match(name: string): readonly string[] | undefined;
  /** Number of distinct names and wildcards watched. */
  readonly size: number;
}

/** Lower case, no trailing dot: the form every lookup key takes. */
export function normalizeName(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  // toLowerCase allocates even for lower-case input; most names already are.
  return /[A-Z]/.test(n) ? n.toLowerCase() : n;
}

function add(map: Map<string, string[]>, key: string, rule: string): void {
  const list = map.get(key);
  if (!list) map.set(key, [rule]);
  else if (!list.includes(rule)) list.push(rule);
}

export function compileMatcher(ruleNames: Iterable<string>): NameMatcher {
  const exact = new Map<string, string[]>();
  const wild = new Map<string, string[]>();
  for (const rule of ruleNames) {
    const n = normalizeName(rule.trim());
    if (n.startsWith('*.')) {
      const parent = n.slice(2);
      // "*." alone or "*.*.x" are not wildcards we support; the policy
      // validator refuses them before they get here.
      if (parent === '' || parent.includes('*')) throw new Error(`invalid wildcard dns name ${rule}`);
      add(wild, parent, rule);
    } else {
      if (n === '' || n.includes('*')) throw new Error(`invalid dns name ${rule}`);
      add(exact, n, rule);
    }
  }
  const size = exact.size + wild.size;
  if (size === 0) return { match: () => undefined, size };
  return {
    size,
    match(name) {
      const n = normalizeName(name);
      const e = exact.get(n);
      if (wild.size === 0) return e;
      const dot = n.indexOf('.');
      // The leftmost label must be non-empty: ".example.com" is not under "*.example.com".
      const w = dot > 0 ? wild.get(n.slice(dot + 1)) : undefined;
      if (!w) return e;
      if (!e) return w;
      return [...new Set([...e, ...w])];
    },
  };
}
