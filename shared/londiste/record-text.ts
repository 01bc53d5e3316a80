/**
 * Reading PostgreSQL's text forms that Londiste events carry: a composite
 * value (`(1,"a ""b""",,)`, as `row::text` writes it) and a one-dimensional
 * text array (`{id,"Odd name"}`). Pure functions, no I/O.
 *
 * Composite text follows record_in's rules: fields separated by commas; an
 * empty unquoted field is NULL (an empty string is written `""`); inside
 * double quotes `""` is a quote; a backslash takes the next character as
 * it is, quoted or not.
 */

export class RecordTextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RecordTextError";
  }
}

export function parseRecord(text: string): Array<string | null> {
  if (text.length < 2 || text[0] !== "(" || text[text.length - 1] !== ")") {
    throw new RecordTextError(`not a composite value: ${text.slice(0, 40)}`);
  }
  const fields: Array<string | null> = [];
  let i = 1;
  const end = text.length - 1;
  for (;;) {
    let value = "";
    let quoted = false;
    let inQuote = false;
    while (i < end) {
      const ch = text[i]!;
      if (ch === "\\") {
        if (i + 1 >= end) throw new RecordTextError("backslash at the end of a composite value");
        value += text[i + 1]!;
        i += 2;
      } else if (inQuote) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            value += '"';
            i += 2;
          } else {
            inQuote = false;
            i++;
          }
        } else {
          value += ch;
          i++;
        }
      } else if (ch === '"') {
        inQuote = quoted = true;
        i++;
      } else if (ch === ",") {
        break;
      } else {
        value += ch;
        i++;
      }
    }
    if (inQuote) throw new RecordTextError("unterminated quote in a composite value");
    fields.push(value === "" && !quoted ? null : value);
    if (i >= end) break;
    i++; // the comma
  }
  return fields;
}

/** A one-dimensional text[] literal without NULLs, e.g. column names. */
export function parseTextArray(text: string): string[] {
  if (text.length < 2 || text[0] !== "{" || text[text.length - 1] !== "}") {
    throw new RecordTextError(`not an array value: ${text.slice(0, 40)}`);
  }
  if (text === "{}") return [];
  const items: string[] = [];
  let i = 1;
  const end = text.length - 1;
  for (;;) {
    let value = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= end) throw new RecordTextError("unterminated quote in an array value");
        const ch = text[i]!;
        if (ch === "\\") {
          value += text[i + 1] ?? "";
          i += 2;
        } else if (ch === '"') {
          i++;
          break;
        } else {
          value += ch;
          i++;
        }
      }
    } else {
      while (i < end && text[i] !== ",") value += text[i++]!;
      if (value === "NULL") throw new RecordTextError("NULL element in a name list");
    }
    items.push(value);
    if (i >= end) break;
    if (text[i] !== ",") throw new RecordTextError(`unexpected character in an array value at ${i}`);
    i++;
  }
  return items;
}
