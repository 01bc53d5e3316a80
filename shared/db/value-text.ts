/**
 * The value-text contract: the session settings under which a replicated
 * value prints as the same text on the provider and the subscriber, and
 * that text reads back into the same value. Capture, apply, the initial
 * copy, compare and repair all pin these, so the settings of the
 * server, the role or the writer's session never change a value on its
 * way. The capture trigger is PL/pgSQL and cannot import this module:
 * test/db/value-text.test.ts checks that it pins exactly OUTPUT_SETTINGS.
 */
import { quoteLiteral } from "./sql-text.ts";

export type Setting = readonly [name: string, value: string];

/**
 * What a value's output text depends on: date/time types (DateStyle, IntervalStyle, TimeZone),
 * floats and geometric types (extra_float_digits: shortest exact form), bytea, money.
 */
export const OUTPUT_SETTINGS: readonly Setting[] = [
  ["DateStyle", "ISO, YMD"],
  ["IntervalStyle", "postgres"],
  ["TimeZone", "UTC"],
  ["extra_float_digits", "3"],
  ["bytea_output", "hex"],
  ["lc_monetary", "C"],
];

/**
 * How SQL text and parameters carry values in: string literals take backslashes as plain
 * characters, and a NULL element of a text[] parameter is NULL (grouped apply sends values
 * that way).
 */
export const INPUT_SETTINGS: readonly Setting[] = [
  ["standard_conforming_strings", "on"],
  ["array_nulls", "on"],
];

/** Both: what every session that reads or writes replicated values as text runs under. */
export const VALUE_TEXT_SETTINGS: readonly Setting[] = [...OUTPUT_SETTINGS, ...INPUT_SETTINGS];

/** The named settings of VALUE_TEXT_SETTINGS, in its order (names as listed there). */
export function settingsNamed(...names: string[]): Setting[] {
  for (const name of names) {
    if (!VALUE_TEXT_SETTINGS.some(([n]) => n === name)) throw new Error(`not a value-text setting: ${name}`);
  }
  return VALUE_TEXT_SETTINGS.filter(([n]) => names.includes(n));
}

/** `set [local] name = 'value'` statements, `; `-separated (no trailing semicolon). */
export function setStatements(settings: readonly Setting[], scope: "session" | "local" = "session"): string {
  const set = scope === "local" ? "set local" : "set";
  return settings.map(([name, value]) => `${set} ${name} = ${quoteLiteral(value)}`).join("; ");
}

/** The same as libpq startup options (`-c name=value`); spaces dropped, as libpq splits options on them. */
export function startupOptions(settings: readonly Setting[]): string {
  return settings.map(([name, value]) => `-c ${name}=${value.replace(/ /g, "")}`).join(" ");
}
