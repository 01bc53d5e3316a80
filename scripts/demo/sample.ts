/**
 * The demo's sample data: a small shop (customers, orders with a foreign
 * key to customers, an invoice number sequence), a writer that keeps
 * changing it, and the comparison of both sides.
 */
import pg from "pg";

export const TABLES = ["public.customers", "public.orders"];
export const SEQUENCES = ["public.customers_id_seq", "public.orders_id_seq", "public.invoice_no"];

/** The same tables on both sides (londiste replicates rows, not DDL). */
const TABLES_SQL = `
create table customers (
    id         serial primary key,
    name       text not null,
    email      text not null,
    country    text not null,
    created_at timestamptz not null default now()
);
create table orders (
    id          bigserial primary key,
    customer_id int not null,
    invoice_no  bigint,
    amount      numeric(10,2) not null,
    status      text not null default 'new',
    ordered_at  timestamptz not null default now(),
    note        text
);
create index orders_customer_idx on orders (customer_id);
create sequence invoice_no;
`;
/** Added after the provider's load: one validation pass instead of a check per row. */
const FOREIGN_KEY_SQL = "alter table orders add constraint orders_customer_id_fkey foreign key (customer_id) references customers (id)";

/** Session settings under which rows print the same on both sides (timestamptz, floats). */
export const COMPARE_SETTINGS = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3";

/** The subscriber's tables: empty, with the foreign key. */
export async function createSchema(db: pg.Pool): Promise<void> {
  await db.query(TABLES_SQL);
  await db.query(FOREIGN_KEY_SQL);
}

/** The provider's tables with `customers` customers and `orders` orders; `loaded` hears after each chunk. */
export async function createSampleData(
  db: pg.Pool,
  customers: number,
  orders: number,
  loaded: (orders: number) => void = () => {},
): Promise<void> {
  await db.query(TABLES_SQL);
  await db.query(
    `insert into customers (name, email, country, created_at)
     select 'customer ' || i, 'c' || i || '@example.com',
            (array['DE','FR','EE','US','JP','BR'])[1 + i % 6],
            now() - (i || ' minutes')::interval
       from generate_series(1, $1) i`,
    [customers],
  );
  const chunk = Math.max(100_000, Math.ceil(orders / 5));
  for (let from = 1; from <= orders; from += chunk) {
    const to = Math.min(orders, from + chunk - 1);
    await db.query(
      `insert into orders (customer_id, invoice_no, amount, status, ordered_at, note)
       select 1 + (i * 7919) % $1, nextval('invoice_no'), round((5 + (i * 37) % 500 + (i % 100) / 100.0)::numeric, 2),
              (array['new','paid','shipped'])[1 + i % 3], now() - (i || ' seconds')::interval,
              'deliver to door ' || i || ', ' || (array['ring twice','leave with neighbour','call first','back entrance'])[1 + i % 4]
              || ' / ' || md5(i::text)
         from generate_series($2::bigint, $3::bigint) i`,
      [customers, from, to],
    );
    loaded(to);
  }
  await db.query(FOREIGN_KEY_SQL);
  await db.query("analyze customers; analyze orders");
}

export interface WriterCounts {
  inserts: number;
  updates: number;
  deletes: number;
  errors: number;
}

/**
 * Every 100 ms one transaction on the provider: new orders (now and then
 * a new customer), an order paid or shipped, an order deleted, a customer
 * changing email. Stops after the running transaction.
 */
export class Writer {
  readonly counts: WriterCounts = { inserts: 0, updates: 0, deletes: 0, errors: 0 };
  lastError: string | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private round = 0;

  constructor(
    private readonly client: pg.Client,
    private readonly customers: number,
    private readonly orders: number,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const started = Date.now();
      try {
        await this.step();
      } catch (error) {
        this.counts.errors++;
        this.lastError = (error as Error).message;
        await this.client.query("rollback").catch(() => {});
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 100 - (Date.now() - started))));
    }
  }

  private async step(): Promise<void> {
    const c = this.client;
    const r = this.round++;
    const customer = 1 + Math.floor(Math.random() * this.customers);
    const order = 1 + Math.floor(Math.random() * this.orders);
    await c.query("begin");
    if (r % 10 === 0) {
      await c.query("insert into customers (name, email, country) values ($1, $2, 'EE')", [`new customer ${r}`, `new${r}@example.com`]);
      this.counts.inserts++;
    }
    await c.query(
      `insert into orders (customer_id, invoice_no, amount, note)
       select $1, nextval('invoice_no'), round((random() * 500)::numeric, 2), 'express' from generate_series(1, 2)`,
      [customer],
    );
    this.counts.inserts += 2;
    const paid = await c.query("update orders set status = case status when 'new' then 'paid' else 'shipped' end where id = $1", [order]);
    this.counts.updates += paid.rowCount ?? 0;
    const gone = await c.query("delete from orders where id = $1", [1 + ((order * 31) % this.orders)]);
    this.counts.deletes += gone.rowCount ?? 0;
    if (r % 5 === 0) {
      const moved = await c.query("update customers set email = $2 where id = $1", [customer, `moved${r}@example.org`]);
      this.counts.updates += moved.rowCount ?? 0;
    }
    await c.query("commit");
  }
}

export interface TableSummary {
  rows: number;
  checksum: string;
}

/** Row count and an order-independent checksum of the rows' text, under COMPARE_SETTINGS. */
export async function summarize(db: pg.Pool, table: string): Promise<TableSummary> {
  const { rows } = await db.query<{ n: string; sum: string | null }>(
    `select count(*) as n, coalesce(sum(hashtext(t::text)::bigint), 0)::text as sum from ${table} t`,
  );
  return { rows: Number(rows[0]!.n), checksum: rows[0]!.sum ?? "0" };
}

export async function sequenceValue(db: pg.Pool, seq: string): Promise<string | null> {
  const { rows } = await db.query<{ v: string | null }>("select pg_sequence_last_value($1::regclass)::text as v", [seq]);
  return rows[0]!.v;
}
