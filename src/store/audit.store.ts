// Audit events: append to the hash chain (inside the caller's unit of work) and read back.
import {
  chainHash,
  eventHash,
  type AuditAction,
  type AuditEvent,
  type AuditOutcome,
  type ChainedEvent,
} from '../domain/audit.js';
import BetterSqlite3 from 'better-sqlite3';
import {
  sql,
  type CompiledQuery,
  type ExpressionBuilder,
  type Insertable,
  type SelectQueryBuilder,
} from 'kysely';
import type { Checkpoint } from '../domain/audit-verify.js';
import type { Database } from './database.js';
import { engineOf } from './dialect.js';
import { prepared } from './prepared.js';
import type { AuditEventRow, DB, Tx } from './tables.js';

export type NewAuditEvent = Omit<AuditEvent, 'seq'>;

/**
 * Appends one event at the head of the chain. The head row is locked (FOR UPDATE on
 * PostgreSQL; SQLite already has a single writer) so sequence numbers stay gapless and ordered.
 */
export async function appendAuditEvent(tx: Tx, input: NewAuditEvent): Promise<ChainedEvent> {
  const head = await lockedAuditHead.first(tx, {});
  if (!head) throw new Error('The audit head row is missing.');
  const event: AuditEvent = { ...input, seq: head.seq + 1 };
  const hash = eventHash(event);
  const chain = chainHash(head.chain_hash, hash);
  await insertAuditEvent.run(tx, chainedRow({ event, hash, chain }));
  const disclosed = patientIdsIn(event);
  if (disclosed.length > 0) {
    await tx
      .insertInto('audit_event_patients')
      .values(disclosed.map((patient_id) => ({ patient_id, seq: event.seq })))
      .execute();
  }
  await advanceAuditHead.run(tx, { seq: event.seq, chain });
  return { event, hash, chain };
}

/** An event's columns, without its place in the chain (what the inbox holds). */
export function unchainedRow(
  event: NewAuditEvent,
): Omit<Insertable<DB['audit_inbox']>, 'n' | 'xid'> {
  return {
    id: event.id,
    occurred_at: event.occurredAt,
    action: event.action,
    type: event.type,
    outcome: event.outcome,
    actor_user_id: event.actor.userId,
    actor_role: event.actor.role,
    actor_org_id: event.actor.organizationId,
    actor_ip: event.actor.ip,
    actor_user_agent: event.actor.userAgent,
    patient_id: event.patientId,
    entity_type: event.entity?.type ?? null,
    entity_id: event.entity?.id ?? null,
    entity_version: event.entity?.version ?? null,
    purpose: event.purpose,
    request_id: event.requestId,
    detail: event.detail === null ? null : JSON.stringify(event.detail),
  };
}

/** A hashed event as its audit_events row. */
export function chainedRow({ event, hash, chain }: ChainedEvent): Insertable<DB['audit_events']> {
  return { seq: event.seq, ...unchainedRow(event), event_hash: hash, chain_hash: chain };
}

/**
 * Queues one event for the sealer (PostgreSQL, CARETRAIL_AUDIT_APPEND=sealer): no lock, so
 * concurrent units of work do not wait for each other. The row carries the transaction's id.
 */
export async function queueAuditEvent(tx: Tx, input: NewAuditEvent): Promise<void> {
  await insertInboxEvent.run(tx, unchainedRow(input));
}

// The three statements of every audit event, prepared (they run once per API request).
const lockedAuditHead = prepared((db) => {
  const query = db.selectFrom('audit_head').select(['seq', 'chain_hash']).where('id', '=', 1);
  return engineOf(db) === 'postgres' ? query.forUpdate() : query;
});
type EventColumns = Omit<Insertable<DB['audit_inbox']>, 'n' | 'xid'>;

/** An event's columns from a prepared query's parameters (shared by both inserts below). */
const eventColumns = (p: EventColumns): EventColumns => ({
  id: p.id,
  occurred_at: p.occurred_at,
  action: p.action,
  type: p.type,
  outcome: p.outcome,
  actor_user_id: p.actor_user_id,
  actor_role: p.actor_role,
  actor_org_id: p.actor_org_id,
  actor_ip: p.actor_ip,
  actor_user_agent: p.actor_user_agent,
  patient_id: p.patient_id,
  entity_type: p.entity_type,
  entity_id: p.entity_id,
  entity_version: p.entity_version,
  purpose: p.purpose,
  request_id: p.request_id,
  detail: p.detail,
});
const insertAuditEvent = prepared((db, p: Insertable<DB['audit_events']>) =>
  db.insertInto('audit_events').values({
    seq: p.seq,
    ...eventColumns(p),
    event_hash: p.event_hash,
    chain_hash: p.chain_hash,
  }),
);
const insertInboxEvent = prepared((db, p: EventColumns) =>
  db.insertInto('audit_inbox').values(eventColumns(p)),
);
const advanceAuditHead = prepared((db, p: { seq: number; chain: string }) =>
  db.updateTable('audit_head').set({ seq: p.seq, chain_hash: p.chain }).where('id', '=', 1),
);

/** Patients an event disclosed besides its main one (detail.patientIds). */
export function patientIdsIn(event: AuditEvent): string[] {
  const ids = event.detail?.patientIds;
  if (!Array.isArray(ids)) return [];
  return [
    ...new Set(ids.filter((id): id is string => typeof id === 'string' && id !== event.patientId)),
  ];
}

/** An event's fields from its row, in audit_events or in the sealer's inbox. */
export function eventOfRow(
  row: Omit<AuditEventRow, 'seq' | 'event_hash' | 'chain_hash'>,
): Omit<AuditEvent, 'seq'> {
  return {
    id: row.id,
    occurredAt: row.occurred_at,
    action: row.action as AuditAction,
    type: row.type,
    outcome: row.outcome as AuditOutcome,
    actor: {
      userId: row.actor_user_id,
      role: row.actor_role,
      organizationId: row.actor_org_id,
      ip: row.actor_ip,
      userAgent: row.actor_user_agent,
    },
    patientId: row.patient_id,
    entity:
      row.entity_type === null
        ? null
        : { type: row.entity_type, id: row.entity_id, version: row.entity_version },
    purpose: row.purpose,
    requestId: row.request_id,
    detail: row.detail === null ? null : (JSON.parse(row.detail) as Record<string, unknown>),
  };
}

/** Rebuilds the hashed event from its stored row. */
export function auditEventFromRow(row: AuditEventRow): ChainedEvent {
  return {
    event: { ...eventOfRow(row), seq: row.seq },
    hash: row.event_hash,
    chain: row.chain_hash,
  };
}

export async function listAuditEvents(
  db: Tx,
  filter: { patientId?: string; actorUserId?: string; afterSeq?: number; limit?: number } = {},
): Promise<ChainedEvent[]> {
  let q = filteredEvents(db, {
    ...(filter.patientId !== undefined ? { patientId: filter.patientId } : {}),
    ...(filter.actorUserId !== undefined ? { actorUserId: filter.actorUserId } : {}),
  }).orderBy('seq');
  if (filter.afterSeq !== undefined) q = q.where('seq', '>', filter.afterSeq);
  if (filter.limit !== undefined) q = q.limit(filter.limit);
  const rows = await q.execute();
  return rows.map(auditEventFromRow);
}

export async function auditHead(db: Tx): Promise<{ seq: number; chain: string }> {
  const head = await db
    .selectFrom('audit_head')
    .select(['seq', 'chain_hash'])
    .where('id', '=', 1)
    .executeTakeFirstOrThrow();
  return { seq: head.seq, chain: head.chain_hash };
}

/** Stores a signed checkpoint; false when one at that seq was already there (another instance). */
export async function insertCheckpoint(tx: Tx, c: Checkpoint): Promise<boolean> {
  const result = await tx
    .insertInto('audit_checkpoints')
    .values({
      seq: c.seq,
      chain_hash: c.chain,
      created_at: c.createdAt,
      key_id: c.keyId,
      signature: c.signature,
    })
    .onConflict((oc) => oc.column('seq').doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
}

function toCheckpoint(r: {
  seq: number;
  chain_hash: string;
  created_at: string;
  key_id: string;
  signature: string;
}): Checkpoint {
  return {
    seq: r.seq,
    chain: r.chain_hash,
    createdAt: r.created_at,
    keyId: r.key_id,
    signature: r.signature,
  };
}

/** The newest checkpoint only: the signing job polls it twice a second. */
export async function latestCheckpoint(db: Tx): Promise<Checkpoint | undefined> {
  const row = await db
    .selectFrom('audit_checkpoints')
    .selectAll()
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row ? toCheckpoint(row) : undefined;
}

export async function listCheckpoints(db: Tx): Promise<Checkpoint[]> {
  const rows = await db.selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
  return rows.map(toCheckpoint);
}

export async function firstAuditSeq(db: Tx): Promise<number | null> {
  const row = await db
    .selectFrom('audit_events')
    .select('seq')
    .orderBy('seq')
    .limit(1)
    .executeTakeFirst();
  return row?.seq ?? null;
}

/**
 * Reads events in sequence order, one page at a time, so that a million events are walked in
 * constant memory on either engine.
 */
export async function* streamAuditEvents(
  db: Tx,
  options: { afterSeq?: number; upTo?: number; pageSize?: number; filter?: AuditFilter } = {},
): AsyncGenerator<AuditEventRow> {
  const pageSize = options.pageSize ?? 2000;
  let after = options.afterSeq ?? 0;
  for (;;) {
    let q = filteredEvents(db, options.filter ?? {}).where('seq', '>', after);
    if (options.upTo !== undefined) q = q.where('seq', '<=', options.upTo);
    const rows = await q.orderBy('seq').limit(pageSize).execute();
    for (const row of rows) yield row;
    const last = rows[rows.length - 1];
    if (rows.length < pageSize || !last) return;
    after = last.seq;
  }
}

export interface AuditFilter {
  /** Events by this organization's users or about this organization's patients. */
  organizationId?: string;
  patientId?: string;
  actorUserId?: string;
  action?: string;
  outcome?: string;
  type?: string;
  from?: string;
  to?: string;
}

/**
 * Events about a patient: those naming it as their patient, and those that disclosed it among
 * others (a search result list), found through audit_event_patients.
 */
function aboutPatient<TB extends 'audit_events'>(eb: ExpressionBuilder<DB, TB>, patientId: string) {
  const events = eb as unknown as ExpressionBuilder<DB, 'audit_events'>;
  return events.or([
    events('audit_events.patient_id', '=', patientId),
    events(
      'audit_events.seq',
      'in',
      events
        .selectFrom('audit_event_patients')
        .select('audit_event_patients.seq')
        .where('audit_event_patients.patient_id', '=', patientId),
    ),
  ]);
}

export interface AccessReportRow {
  seq: number;
  at: string;
  action: string;
  type: string;
  outcome: string;
  actorName: string | null;
  actorRole: string | null;
  organization: string | null;
}

/** A patient's events, newest first, with the actor's name and organization. */
export async function accessReportRows(
  tx: Tx,
  patientId: string,
  page: { beforeSeq: number | null; limit: number },
): Promise<AccessReportRow[]> {
  let q = tx
    .selectFrom('audit_events')
    .leftJoin('users', 'users.id', 'audit_events.actor_user_id')
    .leftJoin('organizations', 'organizations.id', 'audit_events.actor_org_id')
    .select([
      'audit_events.seq as seq',
      'audit_events.occurred_at as at',
      'audit_events.action as action',
      'audit_events.type as type',
      'audit_events.outcome as outcome',
      'users.name as actorName',
      'audit_events.actor_role as actorRole',
      'organizations.name as organization',
    ])
    .where((eb) => aboutPatient(eb, patientId))
    .orderBy('audit_events.seq', 'desc')
    .limit(page.limit);
  if (page.beforeSeq !== null) q = q.where('audit_events.seq', '<', page.beforeSeq);
  return q.execute();
}

function filteredEvents(db: Tx, f: AuditFilter) {
  return withFilter(db.selectFrom('audit_events').selectAll(), f);
}

function withFilter<O>(
  query: SelectQueryBuilder<DB, 'audit_events', O>,
  f: AuditFilter,
): SelectQueryBuilder<DB, 'audit_events', O> {
  let q = query;
  const organizationId = f.organizationId;
  if (organizationId !== undefined) {
    q = q.where((eb) =>
      eb.or([
        eb('actor_org_id', '=', organizationId),
        eb(
          'patient_id',
          'in',
          eb.selectFrom('patients').select('id').where('organization_id', '=', organizationId),
        ),
      ]),
    );
  }
  const patientId = f.patientId;
  if (patientId !== undefined) q = q.where((eb) => aboutPatient(eb, patientId));
  if (f.actorUserId !== undefined) q = q.where('actor_user_id', '=', f.actorUserId);
  if (f.action !== undefined) q = q.where('action', '=', f.action);
  if (f.outcome !== undefined) q = q.where('outcome', '=', f.outcome);
  if (f.type !== undefined) q = q.where('type', '=', f.type);
  if (f.from !== undefined) q = q.where('occurred_at', '>=', f.from);
  if (f.to !== undefined) q = q.where('occurred_at', '<', f.to);
  return q;
}

/**
 * One page of the filtered events after `afterSeq`, in CHAIN_COLUMNS order, compiled for a
 * connection of its own that fetches rows as arrays (see audit-scan.ts).
 */
export function filteredPageQuery(
  db: Tx,
  filter: AuditFilter,
  afterSeq: number,
  limit: number,
): CompiledQuery {
  return withFilter(db.selectFrom('audit_events').select([...CHAIN_COLUMNS]), filter)
    .where('seq', '>', afterSeq)
    .orderBy('seq')
    .limit(limit)
    .compile();
}

/** Newest first, keyset on seq. */
export async function searchAuditEvents(
  db: Tx,
  filter: AuditFilter,
  page: { beforeSeq: number | null; limit: number },
): Promise<AuditEventRow[]> {
  let q = filteredEvents(db, filter).orderBy('seq', 'desc').limit(page.limit);
  if (page.beforeSeq !== null) q = q.where('seq', '<', page.beforeSeq);
  return q.execute();
}

export const CHAIN_COLUMNS = [
  'seq',
  'id',
  'occurred_at',
  'action',
  'type',
  'outcome',
  'actor_user_id',
  'actor_role',
  'actor_org_id',
  'actor_ip',
  'actor_user_agent',
  'patient_id',
  'entity_type',
  'entity_id',
  'entity_version',
  'purpose',
  'request_id',
  'detail',
  'event_hash',
  'chain_hash',
] as const;

/** A row fetched as an array in CHAIN_COLUMNS order. */
export function rowFromArray(r: unknown[]): AuditEventRow {
  return {
    seq: r[0],
    id: r[1],
    occurred_at: r[2],
    action: r[3],
    type: r[4],
    outcome: r[5],
    actor_user_id: r[6],
    actor_role: r[7],
    actor_org_id: r[8],
    actor_ip: r[9],
    actor_user_agent: r[10],
    patient_id: r[11],
    entity_type: r[12],
    entity_id: r[13],
    entity_version: r[14],
    purpose: r[15],
    request_id: r[16],
    detail: r[17],
    event_hash: r[18],
    chain_hash: r[19],
  } as AuditEventRow;
}

/**
 * Every event after `afterSeq`, in sequence order, as hashed events in batches. On SQLite the scan runs on
 * a read-only connection of its own and fetches rows as arrays (verification reads millions);
 * on PostgreSQL it pages through the table.
 */
export async function* scanAuditChain(
  db: Database,
  afterSeq: number,
  upTo: number,
): AsyncGenerator<ChainedEvent[]> {
  if (db.sqliteFile === null) {
    let batch: ChainedEvent[] = [];
    for await (const row of streamAuditEvents(db.read, { afterSeq, upTo, pageSize: 5000 })) {
      batch.push(auditEventFromRow(row));
      if (batch.length === 5000) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
    return;
  }
  const scanner = new BetterSqlite3(db.sqliteFile, { readonly: true });
  try {
    const rows = scanner
      .prepare(
        `select ${CHAIN_COLUMNS.join(', ')} from audit_events where seq > ? and seq <= ? order by seq`,
      )
      .raw(true)
      .iterate(afterSeq, upTo) as IterableIterator<unknown[]>;
    let batch: ChainedEvent[] = [];
    for (const r of rows) {
      batch.push(auditEventFromRow(rowFromArray(r)));
      if (batch.length === 5000) {
        yield batch;
        batch = [];
        // Let the server breathe during long scans.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (batch.length > 0) yield batch;
  } finally {
    scanner.close();
  }
}

/** The stored chain value at each of `seqs` that the log still holds. */
export async function chainHashesAt(db: Tx, seqs: readonly number[]): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const unique = [...new Set(seqs)];
  for (let i = 0; i < unique.length; i += 500) {
    const rows = await db
      .selectFrom('audit_events')
      .select(['seq', 'chain_hash'])
      .where('seq', 'in', unique.slice(i, i + 500))
      .execute();
    for (const r of rows) out.set(r.seq, r.chain_hash);
  }
  return out;
}

/** The highest sequence number stored, whatever the head row says. */
export async function lastAuditSeq(db: Tx): Promise<number> {
  const row = await db
    .selectFrom('audit_events')
    .select('seq')
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.seq ?? 0;
}

/**
 * How many distinct patients a user saw since `since`: records read one by one, and patients
 * listed by searches (audit_event_patients). UNION removes the duplicates.
 */
export async function distinctPatientsSeen(db: Tx, userId: string, since: string): Promise<number> {
  // The window's first sequence number (audit_events_time): with it the user's events are an
  // index range (actor, seq) instead of every event the user ever caused, which took half a
  // second for a user with a million events. Exact: an event of the window has seq >= it.
  const first = db
    .selectFrom('audit_events as w')
    // "+ 0": a bare min(seq) lets SQLite walk the rowid from the start looking for the window.
    .select(sql<number>`min(${sql.ref('w.seq')} + 0)`.as('s'))
    .where('w.occurred_at', '>=', since);
  const read = db
    .selectFrom('audit_events')
    .select('patient_id as p')
    .where('actor_user_id', '=', userId)
    .where('seq', '>=', first)
    .where('occurred_at', '>=', since)
    .where('outcome', '=', 'success')
    .where('action', '=', 'R')
    .where('patient_id', 'is not', null);
  const listed = db
    .selectFrom('audit_events')
    .innerJoin('audit_event_patients', 'audit_event_patients.seq', 'audit_events.seq')
    .select('audit_event_patients.patient_id as p')
    .where('audit_events.actor_user_id', '=', userId)
    .where('audit_events.seq', '>=', first)
    .where('audit_events.occurred_at', '>=', since)
    .where('audit_events.outcome', '=', 'success');
  const row = await db
    .selectFrom(read.union(listed).as('seen'))
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}
