/**
 * Sequences followed by the subscriber (docs/protocols.md, "Replay: one
 * batch, exactly once"): with every applied
 * batch, each one's provider value is pushed with setval, and only when
 * it is ahead, so a sequence never moves backwards (setval is not
 * transactional; repeating it after a crash is harmless).
 *
 * A sequence the provider no longer registers (`provider remove-seq`) is
 * dropped from the subscriber's set in the batch's transaction, as a
 * table the provider no longer captures is: following it would push
 * values of a sequence the provider side has let go of.
 */
import type pg from "pg";
import { subscriberSeqs } from "../../shared/londiste/catalog.ts";

export interface SequenceRound {
  /** Sequences moved forward. */
  pushed: number;
  /** Sequences dropped from the subscriber's set. */
  dropped: string[];
}

export async function pushSequences(
  provider: pg.Pool,
  sub: pg.ClientBase,
  queue: string,
  notice?: (message: string, details: Record<string, unknown>) => void,
): Promise<SequenceRound> {
  const seqs = await subscriberSeqs(sub, queue);
  if (seqs.length === 0) return { pushed: 0, dropped: [] };
  const { rows } = await provider.query<{ name: string; value: string | null; found: boolean; registered: boolean }>(
    `select s as name, to_regclass(s) is not null as found,
            exists (select 1 from londiste.provider_seq p where p.queue_name = $2 and p.seq_name = s) as registered,
            case when to_regclass(s) is not null then pg_sequence_last_value(to_regclass(s)) end as value
       from unnest($1::text[]) s`,
    [seqs, queue],
  );
  const dropped = rows.filter((r) => !r.registered).map((r) => r.name);
  for (const seq of dropped) await sub.query("select londiste.subscriber_remove_seq($1, $2)", [queue, seq]);
  if (dropped.length > 0) notice?.("sequences no longer registered on the provider: no longer followed", { seqs: dropped });
  const followed = rows.filter((r) => r.registered);
  const missing = followed.filter((r) => !r.found).map((r) => r.name);
  if (missing.length > 0) notice?.("followed sequences missing on the provider", { seqs: missing });
  const known = followed.filter((r) => r.value !== null);
  if (known.length === 0) return { pushed: 0, dropped };
  const result = await sub.query(
    `select setval(c.oid::regclass, x.v)
       from unnest($1::text[], $2::int8[]) as x(name, v)
       join pg_class c on c.oid = to_regclass(x.name) and c.relkind = 'S'
      where pg_sequence_last_value(c.oid::regclass) is null or x.v > pg_sequence_last_value(c.oid::regclass)`,
    [known.map((r) => r.name), known.map((r) => r.value)],
  );
  return { pushed: result.rowCount ?? 0, dropped };
}
