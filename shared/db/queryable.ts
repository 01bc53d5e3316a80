// The one shape of "something that runs a query" that shared code takes.
import type pg from "pg";

/** Anything that runs a query: a pool, a client, or a client inside a transaction. */
export type Queryable = Pick<pg.ClientBase, "query">;
