/**
 * Sequences followed by the subscriber (docs/protocols.md, "Replay: one
 * batch, exactly once"): with every applied
 * batch, each one's provider value is pushed with setval, and only when
 * it is ahead, so a sequence never moves backwards (setval is not
 * transactional; repeating it after a crash is harmless).
 */
import type pg from "pg";
import { subscriberSeqs } from "../../shared/londiste/catalog.ts";

export async function pushSequences(
  provider: pg.Pool,
  sub: pg.ClientBase,
  queue: string,
  notice?: (message: string, details: Record<string, unknown>) => void,
): Promise<number> {
  const seqs = await subscriberSeqs(sub, queue);
  if (seqs.length === 0) return 0;
  const { rows } = await provider.query<{ name: string; value: string | null; found: boolean }>(
    `select s as name, to_regclass(s) is not null as found,
            case when to_regclass(s) is not null then pg_sequence_last_value(to_regclass(s)) end as value
       from unnest($1::text[]) s`,
    [seqs],
  );
  const missing = rows.filter((r) => !r.found).map((r) => r.name);
  if (missing.length > 0) notice?.("followed sequences missing on the provider", { seqs: missing });
  const known = rows.filter((r) => r.value !== null);
  if (known.length === 0) return 0;
  const result = await sub.query(
    `select setval(c.oid::regclass, x.v)
       from unnest($1::text[], $2::int8[]) as x(name, v)
       join pg_class c on c.oid = to_regclass(x.name) and c.relkind = 'S'
      where pg_sequence_last_value(c.oid::regclass) is null or x.v > pg_sequence_last_value(c.oid::regclass)`,
    [known.map((r) => r.name), known.map((r) => r.value)],
  );
  return result.rowCount ?? 0;
}
