/**
 * The line tokenizer shared by the three destination grammars
 * (EGRESS_DESTINATION, EGRESS_HTTP_PROXY_DESTINATION, EGRESS_DNS_PROXY_DESTINATION).
 *
 * ConfigMaps are edited by hand: tolerate CRLF, surrounding whitespace, blank
 * lines and `#` comments (whole-line or trailing after whitespace).
 */
export interface Line {
  /** 1-based line number in the original value, for messages and logs. */
  readonly number: number;
  /** The line with comment and surrounding whitespace removed. */
  readonly text: string;
  /** The whitespace-separated fields of `text`. */
  readonly fields: readonly string[];
}

export function tokenize(value: string): Line[] {
  const out: Line[] = [];
  const raw = value.split(/\r\n|\r|\n/);
  for (let i = 0; i < raw.length; i++) {
    const text = stripComment(raw[i]!).trim();
    if (text === '') continue;
    out.push({ number: i + 1, text, fields: text.split(/\s+/) });
  }
  return out;
}

/** `#` starts a comment at the start of a line or after whitespace. */
function stripComment(line: string): string {
  const m = /(^|\s)#/.exec(line);
  return m ? line.slice(0, m.index) : line;
}
