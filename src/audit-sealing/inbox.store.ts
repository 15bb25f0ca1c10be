// Sealing the audit inbox into the chain (PostgreSQL). Units of work insert their events into
// audit_inbox, each row stamped with its transaction's id (xid8), without touching audit_head.
// One sealing transaction at a time (a transaction-level advisory lock, whichever instance
// takes it) moves them into audit_events: sequence numbers and chain hashes in (xid, insertion)
// order, and only for rows whose xid is below the horizon pg_snapshot_xmin(pg_current_snapshot())
// — every transaction below it has ended, so no transaction still in flight can commit an event
// that sorts before one already sealed. A row of a rolled-back transaction never appears.
import { sql } from 'kysely';
import { chainHash, eventHash, type AuditEvent } from '../domain/audit.js';
import { chainedRow, eventOfRow, patientIdsIn } from '../store/audit.store.js';
import type { Tx } from '../store/tables.js';

/** pg_advisory_xact_lock(class, 0): one sealer per database at a time. */
const SEAL_LOCK_CLASS = 7302;
/** Rows per INSERT (20 columns each, well under PostgreSQL's 65,535 parameters). */
const INSERT_CHUNK = 500;

export interface SealRound {
  /** Another transaction held the sealing lock (try mode): nothing was done. */
  busy: boolean;
  sealed: number;
  /** The chain's head after the round. */
  head: { seq: number; chain: string };
}

/**
 * One sealing round inside `tx` (a unit of work of its own): takes the sealing lock (waiting for
 * it when `wait`, else giving up when another round holds it), then seals up to `limit` rows
 * below the horizon.
 */
export async function sealAuditInbox(
  tx: Tx,
  options: { limit: number; wait: boolean },
): Promise<SealRound> {
  if (options.wait) {
    await sql`select pg_advisory_xact_lock(${SEAL_LOCK_CLASS}, 0)`.execute(tx);
  } else {
    const { rows } = await sql<{ ok: boolean }>`
      select pg_try_advisory_xact_lock(${SEAL_LOCK_CLASS}, 0) as ok`.execute(tx);
    if (rows[0]?.ok !== true) return { busy: true, sealed: 0, head: { seq: 0, chain: '' } };
  }
  // Read before anything else in this transaction (it has no xid of its own yet).
  const { rows: horizonRows } = await sql<{ horizon: string }>`
    select pg_snapshot_xmin(pg_current_snapshot())::text as horizon`.execute(tx);
  const horizon = horizonRows[0]?.horizon ?? '0';
  const rows = await tx
    .selectFrom('audit_inbox')
    .selectAll()
    .where(sql<boolean>`xid < ${horizon}::xid8`)
    .orderBy('xid')
    .orderBy('n')
    .limit(options.limit)
    .execute();
  const current = await tx
    .selectFrom('audit_head')
    .select(['seq', 'chain_hash'])
    .where('id', '=', 1)
    .forUpdate()
    .executeTakeFirstOrThrow();
  let head = { seq: current.seq, chain: current.chain_hash };
  if (rows.length === 0) return { busy: false, sealed: 0, head };
  const events = [];
  const disclosed: { patient_id: string; seq: number }[] = [];
  for (const row of rows) {
    const event: AuditEvent = { ...eventOfRow(row), seq: head.seq + 1 };
    const hash = eventHash(event);
    const chain = chainHash(head.chain, hash);
    events.push(chainedRow({ event, hash, chain }));
    for (const patient_id of patientIdsIn(event)) disclosed.push({ patient_id, seq: event.seq });
    head = { seq: event.seq, chain };
  }
  for (let i = 0; i < events.length; i += INSERT_CHUNK)
    await tx
      .insertInto('audit_events')
      .values(events.slice(i, i + INSERT_CHUNK))
      .execute();
  for (let i = 0; i < disclosed.length; i += INSERT_CHUNK)
    await tx
      .insertInto('audit_event_patients')
      .values(disclosed.slice(i, i + INSERT_CHUNK))
      .execute();
  const ns = rows.map((r) => r.n);
  for (let i = 0; i < ns.length; i += INSERT_CHUNK)
    await tx
      .deleteFrom('audit_inbox')
      .where('n', 'in', ns.slice(i, i + INSERT_CHUNK))
      .execute();
  await tx
    .updateTable('audit_head')
    .set({ seq: head.seq, chain_hash: head.chain })
    .where('id', '=', 1)
    .execute();
  return { busy: false, sealed: rows.length, head };
}

export interface UnsealedTail {
  /** Events committed but not yet sealed into the chain. */
  count: number;
  /** When the oldest of them happened (null: none waits). */
  oldestAt: string | null;
}

export async function unsealedTail(db: Tx): Promise<UnsealedTail> {
  const row = await db
    .selectFrom('audit_inbox')
    .select((eb) => [
      eb.fn.countAll<number>().as('count'),
      eb.fn.min<string | null>('occurred_at').as('oldest'),
    ])
    .executeTakeFirstOrThrow();
  return { count: row.count, oldestAt: row.oldest };
}

/** The newest transaction id among the events committed so far (null: the inbox is empty). */
export async function newestQueuedXid(db: Tx): Promise<string | null> {
  const { rows } = await sql<{ xid: string | null }>`
    select max(xid)::text as xid from audit_inbox`.execute(db);
  return rows[0]?.xid ?? null;
}

/** Whether events of transactions up to `xid` still wait to be sealed. */
export async function queuedUpTo(db: Tx, xid: string): Promise<boolean> {
  const { rows } = await sql<{ waiting: boolean }>`
    select exists(select 1 from audit_inbox where xid <= ${xid}::xid8) as waiting`.execute(db);
  return rows[0]?.waiting === true;
}
