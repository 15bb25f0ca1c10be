// Queries built and compiled once per engine, then run again with new values. Kysely builds an
// operation tree and compiles it to SQL on every call, which costs 20–30 µs of CPU per statement
// — more than SQLite takes to run the statements of the hot paths (session lookup, patient
// read, notes page, audit append). A prepared query runs the SQL compiled on first use through
// the same connection, transaction and driver as a built query would.
import { CompiledQuery, type Compilable, type Kysely } from 'kysely';
import { engineOf, type Engine } from './dialect.js';
import type { DB, Tx } from './tables.js';

const MARK = '\u0001prepared:';

interface Compiled {
  sql: string;
  /** Per parameter position: the name of a value given at run time, or a constant of the query. */
  slots: ({ name: string } | { value: unknown })[];
}

export interface PreparedQuery<P, O> {
  /** Every row of the result. */
  rows(db: Tx, params: P): Promise<O[]>;
  /** The first row, or undefined. */
  first(db: Tx, params: P): Promise<O | undefined>;
  /** Runs a statement that returns no rows; resolves to the number of rows it changed. */
  run(db: Tx, params: P): Promise<number>;
}

/**
 * `build` receives the database and `p`, whose properties stand for the values of each run
 * (`where('id', '=', p.id)`). Only scalar values can be parameters: a list (`in`), an `is null`
 * test or a changing set of columns needs a query of its own per shape. The query is checked
 * when compiled: a value that did not become a bound parameter fails loudly.
 */
export function prepared<P extends Record<string, unknown>, O>(
  build: (db: Kysely<DB>, p: P) => Compilable<O>,
): PreparedQuery<P, O> {
  const byEngine = new Map<Engine, Compiled>();

  const compile = (db: Tx): Compiled => {
    const engine = engineOf(db);
    let compiled = byEngine.get(engine);
    if (compiled) return compiled;
    const used = new Set<string>();
    const p = new Proxy({} as P, {
      get(_target, name) {
        if (typeof name !== 'string') return undefined;
        used.add(name);
        return `${MARK}${name}`;
      },
    });
    const query = build(db, p).compile();
    const bound = new Set<string>();
    const slots = query.parameters.map((value) => {
      if (typeof value === 'string' && value.startsWith(MARK)) {
        const name = value.slice(MARK.length);
        bound.add(name);
        return { name };
      }
      return { value };
    });
    const unbound = [...used].filter((name) => !bound.has(name));
    if (query.sql.includes(MARK) || unbound.length > 0)
      throw new Error(`prepared query: ${unbound.join(', ')} did not become bound parameters`);
    compiled = { sql: query.sql, slots };
    byEngine.set(engine, compiled);
    return compiled;
  };

  const execute = async (db: Tx, params: P) => {
    const { sql, slots } = compile(db);
    const values = slots.map((slot) => {
      if (!('name' in slot)) return slot.value;
      const value = params[slot.name];
      if (typeof value === 'object' && value !== null && !Buffer.isBuffer(value))
        throw new Error(
          `prepared query: ${slot.name} must be a single value, not a list or object`,
        );
      return value;
    });
    return db.executeQuery<O>(CompiledQuery.raw(sql, values));
  };

  return {
    async rows(db, params) {
      return (await execute(db, params)).rows;
    },
    async first(db, params) {
      return (await execute(db, params)).rows[0];
    },
    async run(db, params) {
      return Number((await execute(db, params)).numAffectedRows ?? 0);
    },
  };
}

/**
 * `insert into table (every column) values (…)`, prepared: `run(tx, row)` takes a whole row.
 * `columns` must name every column of the table (checked by the compiler), so a column added
 * later cannot be dropped silently.
 */
export function preparedInsert<T extends Extract<keyof DB, string>, C extends keyof DB[T] & string>(
  table: T,
  columns: readonly C[] &
    ([Exclude<keyof DB[T] & string, C>] extends [never]
      ? unknown
      : { missingColumns: Exclude<keyof DB[T] & string, C> }),
): { run(db: Tx, row: Record<C, unknown>): Promise<number> } {
  const query = prepared((db, p: Record<string, unknown>) =>
    db
      .insertInto(table)
      .values(Object.fromEntries(columns.map((column) => [column, p[column]])) as never),
  );
  return { run: (db, row) => query.run(db, row) };
}
