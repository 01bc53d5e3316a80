/**
 * The session settings every compare/repair read and write runs under, on
 * both sides: values print (and parse back) the same way whatever the
 * server's or the role's defaults are, so the text of a value on the
 * provider equals its text on the subscriber exactly when replay would
 * have written the same value. search_path is pg_catalog so that
 * format_type qualifies every type outside pg_catalog and no user
 * function or operator can stand in for a built-in one.
 */
export const PINNED_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ["DateStyle", "ISO, YMD"],
  ["IntervalStyle", "postgres"],
  ["TimeZone", "UTC"],
  ["extra_float_digits", "3"],
  ["bytea_output", "hex"],
  ["lc_monetary", "C"],
  ["standard_conforming_strings", "on"],
  ["array_nulls", "on"],
  ["search_path", "pg_catalog"],
];

/** One `set ...;` statement per setting (session level). */
export function pinSettingsSql(local = false): string {
  return PINNED_SETTINGS.map(([name, value]) => `set ${local ? "local " : ""}${name} = '${value}';`).join(" ");
}

/** The same as libpq startup options (`-c name=value`; no value holds a space). */
export function pinnedStartupOptions(): string {
  return PINNED_SETTINGS.map(([name, value]) => `-c ${name}=${value.replace(/ /g, "")}`).join(" ");
}

/** A connection config whose sessions start under the pinned settings (after any options of its own, so they win). */
export function withPinnedSettings<T extends { options?: string }>(config: T): T {
  return { ...config, options: config.options ? `${config.options} ${pinnedStartupOptions()}` : pinnedStartupOptions() };
}
