// Bulk reads of the audit chain (verification, export) on a connection of their own, rows as
// arrays in CHAIN_COLUMNS order: no per-row objects, and on SQLite no Kysely in the loop.
import BetterSqlite3 from 'better-sqlite3';
import pg from 'pg';
import { canonicalJson, jsonString } from '../domain/audit.js';
import { CHAIN_COLUMNS } from './audit.store.js';

/** Where the chain is stored: enough to open another connection (also from a worker thread). */
export type ChainSource = { engine: 'sqlite'; file: string } | { engine: 'postgres'; url: string };

export interface ChainReader {
  /** Rows of a SELECT as arrays; `sql` uses the engine's placeholders (? or $n). */
  rows(sql: string, parameters: readonly unknown[]): Promise<unknown[][]>;
  close(): Promise<void>;
}

/**
 * A read-only connection. With `snapshot`, every query sees the database as it was when the
 * reader opened: a read transaction on SQLite (WAL keeps that snapshot), a REPEATABLE READ one
 * on PostgreSQL.
 */
export async function openChainReader(
  source: ChainSource,
  options: { snapshot?: boolean } = {},
): Promise<ChainReader> {
  if (source.engine === 'sqlite') {
    const conn = new BetterSqlite3(source.file, { readonly: true });
    const statements = new Map<string, BetterSqlite3.Statement>();
    if (options.snapshot) {
      conn.exec('begin');
      // A deferred transaction takes its snapshot at its first read.
      conn.prepare('select seq from audit_head').all();
    }
    return {
      rows(sql, parameters) {
        let statement = statements.get(sql);
        if (!statement) {
          statement = conn.prepare(sql).raw(true);
          statements.set(sql, statement);
        }
        return Promise.resolve(statement.all(...parameters) as unknown[][]);
      },
      close() {
        if (conn.inTransaction) conn.exec('commit');
        conn.close();
        return Promise.resolve();
      },
    };
  }
  const types = new pg.TypeOverrides();
  // int8 as numbers, as the application's pool reads them (sequences stay far below 2^53).
  types.setTypeParser(20, (value: string) => Number(value));
  const client = new pg.Client({ connectionString: source.url, types });
  client.on('error', () => undefined);
  await client.connect();
  if (options.snapshot) {
    await client.query('begin isolation level repeatable read read only');
    await client.query('select seq from audit_head');
  }
  return {
    async rows(sql, parameters) {
      const result = await client.query<unknown[]>({
        text: sql,
        values: parameters as unknown[],
        rowMode: 'array',
      });
      return result.rows;
    },
    async close() {
      try {
        if (options.snapshot) await client.query('commit');
      } finally {
        await client.end();
      }
    },
  };
}

/** One page of the chain by sequence range, for either engine (keyset: seq > after). */
export function chainPageSql(engine: ChainSource['engine']): string {
  const p = (n: number) => (engine === 'sqlite' ? '?' : `$${n}`);
  return `select ${CHAIN_COLUMNS.join(', ')} from audit_events where seq > ${p(1)} and seq <= ${p(2)} order by seq limit ${p(3)}`;
}

const str = jsonString;

/**
 * canonicalEventJson(auditEventFromRow(rowFromArray(r))) straight from the row array, without
 * the intermediate objects (verification hashes millions). A test keeps the two identical.
 */
export function canonicalEventJsonOfRow(r: readonly unknown[]): string {
  const entity =
    r[12] === null
      ? 'null'
      : `{"id":${str(r[13])},"type":${str(r[12])},"version":${r[14] === null ? 'null' : canonicalJson(r[14])}}`;
  return (
    `{"action":${str(r[3])},"actor":{"ip":${str(r[9])},"organizationId":${str(r[8])},"role":${str(r[7])},` +
    `"userAgent":${str(r[10])},"userId":${str(r[6])}},"detail":${r[17] === null ? 'null' : canonicalJson(JSON.parse(r[17] as string))},` +
    `"entity":${entity},"id":${str(r[1])},"occurredAt":${str(r[2])},"outcome":${str(r[5])},` +
    `"patientId":${str(r[11])},"purpose":${str(r[15])},"requestId":${str(r[16])},"seq":${canonicalJson(r[0])},"type":${str(r[4])}}`
  );
}
