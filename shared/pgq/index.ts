/** The PgQ TypeScript API: see docs/pgq.md, "PgQ from TypeScript". */
export * from "./batch.ts";
export * from "./consumer.ts";
export * from "./errors.ts";
export * from "./install.ts";
export * from "./producer.ts";
export * from "./queue-admin.ts";
export type * from "./types.ts";
