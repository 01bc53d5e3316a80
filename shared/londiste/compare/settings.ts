/**
 * The session settings every compare/repair read and write runs under, on
 * both sides: the value-text contract (shared/db/value-text.ts), so the
 * text of a value on the provider equals its text on the subscriber
 * exactly when replay would have written the same value; plus
 * search_path = pg_catalog, so that format_type qualifies every type
 * outside pg_catalog and no user function or operator can stand in for a
 * built-in one.
 */
import { type Setting, startupOptions, VALUE_TEXT_SETTINGS } from "../../db/value-text.ts";

export const PINNED_SETTINGS: readonly Setting[] = [...VALUE_TEXT_SETTINGS, ["search_path", "pg_catalog"]];

/** The same as libpq startup options. */
export function pinnedStartupOptions(): string {
  return startupOptions(PINNED_SETTINGS);
}

/** A connection config whose sessions start under the pinned settings (after any options of its own, so they win). */
export function withPinnedSettings<T extends { options?: string }>(config: T): T {
  return { ...config, options: config.options ? `${config.options} ${pinnedStartupOptions()}` : pinnedStartupOptions() };
}
