// What the blob replica holds or must lose (blob_replicas), and the blobs a restore needs: every
// blob a live row points at (document contents, thumbnails, files of results not on a chart).
//
// States: pending (to copy) → replicated; failed (the file store's own copy is missing or
// damaged: an operator must look); purging (a retention purge: delete the replica's copy) →
// removed. A row holds the id of the outbox item working on it (job_id), or null while it waits
// in the backlog for a free slot (see src/replication/blobs/replicator.ts).
import type { BlobRef } from '../blobs/vault.js';
import { engineOf } from './dialect.js';
import { enqueue, type OutboxTopic } from './outbox.store.js';
import type { BlobReplicaRow, DocumentVersionRow, ResultAttachmentRow, Tx } from './tables.js';

export type ReplicaState = 'pending' | 'replicated' | 'failed' | 'purging' | 'removed';

export const REPLICATE_TOPIC = 'blob.replicate' satisfies OutboxTopic;
export const REPLICA_DELETE_TOPIC = 'blob.replica.delete' satisfies OutboxTopic;

/** States whose work on the replica is still to do. */
const OPEN: ReplicaState[] = ['pending', 'purging'];

async function queueJob(tx: Tx, now: Date, blobKey: string, topic: OutboxTopic): Promise<void> {
  const jobId = await enqueue(tx, now, { topic, payload: { key: blobKey } });
  await tx
    .updateTable('blob_replicas')
    .set({ job_id: jobId })
    .where('blob_key', '=', blobKey)
    .execute();
}

/**
 * A blob now referenced by a committed row (call in that row's unit of work): the replica must
 * get a copy. With `queue`, the copy job is queued in the same unit; without (the backfill), the
 * row waits in the backlog; with `copied`, it is there already. A blob already tracked is left as
 * it is. Returns whether it was new.
 */
export async function trackStoredBlob(
  tx: Tx,
  now: Date,
  blobKey: string,
  options: {
    storedAt?: string;
    queue: boolean;
    /** Copied already, before this commit (synchronous mode): tracked as replicated. */
    copied?: { bytes: number; sha256: string };
  },
): Promise<boolean> {
  const at = now.toISOString();
  const { copied } = options;
  const result = await tx
    .insertInto('blob_replicas')
    .values({
      blob_key: blobKey,
      state: copied ? 'replicated' : 'pending',
      stored_at: options.storedAt ?? at,
      job_id: null,
      replicated_at: copied ? at : null,
      bytes: copied?.bytes ?? null,
      sha256: copied?.sha256 ?? null,
      last_error: null,
      last_error_at: null,
      removed_at: null,
    })
    .onConflict((oc) => oc.column('blob_key').doNothing())
    .executeTakeFirst();
  const inserted = Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
  if (inserted && options.queue) await queueJob(tx, now, blobKey, REPLICATE_TOPIC);
  return inserted;
}

/**
 * A retention purge removed the blob for good (call in the purge's unit of work): the replica's
 * copy goes too. Only purges call this; nothing else ever deletes on the replica. With `queue`
 * false (replication off now) the deletion waits until replication runs again.
 */
export async function markBlobPurged(
  tx: Tx,
  now: Date,
  blobKey: string,
  options: { queue: boolean },
): Promise<void> {
  const result = await tx
    .updateTable('blob_replicas')
    .set({ state: 'purging', job_id: null, last_error: null, last_error_at: null })
    .where('blob_key', '=', blobKey)
    .where('state', '!=', 'removed')
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) === 1 && options.queue)
    await queueJob(tx, now, blobKey, REPLICA_DELETE_TOPIC);
}

/**
 * A copy landed after its blob was purged (the purge's deletion may have run before it): delete
 * it again, after the copy, whatever state the row reached.
 */
export async function requeueReplicaDelete(tx: Tx, now: Date, blobKey: string): Promise<void> {
  await tx
    .updateTable('blob_replicas')
    .set({ state: 'purging', removed_at: null })
    .where('blob_key', '=', blobKey)
    .execute();
  await queueJob(tx, now, blobKey, REPLICA_DELETE_TOPIC);
}

export async function findBlobReplica(
  tx: Tx,
  blobKey: string,
): Promise<BlobReplicaRow | undefined> {
  return tx
    .selectFrom('blob_replicas')
    .selectAll()
    .where('blob_key', '=', blobKey)
    .executeTakeFirst();
}

/** The copy is on the replica and verified; false when the row left `pending` meanwhile (a purge). */
export async function markReplicated(
  tx: Tx,
  blobKey: string,
  at: string,
  copy: { bytes: number; sha256: string },
): Promise<boolean> {
  const result = await tx
    .updateTable('blob_replicas')
    .set({
      state: 'replicated',
      replicated_at: at,
      bytes: copy.bytes,
      sha256: copy.sha256,
      job_id: null,
      last_error: null,
      last_error_at: null,
    })
    .where('blob_key', '=', blobKey)
    .where('state', '=', 'pending')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The replica's copy is gone after a purge. */
export async function markRemoved(tx: Tx, blobKey: string, at: string): Promise<void> {
  await tx
    .updateTable('blob_replicas')
    .set({ state: 'removed', removed_at: at, job_id: null, last_error: null, last_error_at: null })
    .where('blob_key', '=', blobKey)
    .where('state', 'in', ['purging', 'pending'])
    .execute();
}

/**
 * An attempt failed. `permanent`: the file store's own copy is missing or damaged, so no retry
 * can help (state failed, until an operator repairs it and the server restarts).
 */
export async function recordReplicaError(
  tx: Tx,
  blobKey: string,
  at: string,
  message: string,
  permanent: boolean,
): Promise<void> {
  await tx
    .updateTable('blob_replicas')
    .set({
      last_error: message.slice(0, 300),
      last_error_at: at,
      ...(permanent ? { state: 'failed', job_id: null } : {}),
    })
    .where('blob_key', '=', blobKey)
    .where('state', 'in', permanent ? ['pending'] : OPEN)
    .execute();
}

/** Open rows whose job can no longer run (dead-lettered, e.g. by a server without the handler). */
export async function releaseDeadJobs(tx: Tx): Promise<number> {
  const result = await tx
    .updateTable('blob_replicas')
    .set({ job_id: null })
    .where('state', 'in', OPEN)
    .where('job_id', 'is not', null)
    .where('job_id', 'in', (eb) =>
      eb.selectFrom('outbox').select('id').where('status', '!=', 'pending'),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Failed copies get another try (at start-up: an operator may have repaired the file store). */
export async function retryFailed(tx: Tx): Promise<number> {
  const result = await tx
    .updateTable('blob_replicas')
    .set({ state: 'pending', job_id: null })
    .where('state', '=', 'failed')
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/**
 * Queues jobs for backlog rows (open, no job) until `maxQueued` jobs are out, oldest first.
 * Returns how many were queued and whether backlog rows remain.
 */
export async function queueBacklog(
  tx: Tx,
  now: Date,
  maxQueued: number,
): Promise<{ queued: number; more: boolean }> {
  const out = await tx
    .selectFrom('blob_replicas')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', 'in', OPEN)
    .where('job_id', 'is not', null)
    .executeTakeFirstOrThrow();
  const room = maxQueued - out.n;
  if (room <= 0) return { queued: 0, more: true };
  const rows = await tx
    .selectFrom('blob_replicas')
    .select(['blob_key', 'state'])
    .where('state', 'in', OPEN)
    .where('job_id', 'is', null)
    .orderBy('stored_at')
    .limit(room + 1)
    .$if(engineOf(tx) === 'postgres', (q) => q.forUpdate().skipLocked())
    .execute();
  const take = rows.slice(0, room);
  for (const row of take)
    await queueJob(
      tx,
      now,
      row.blob_key,
      row.state === 'purging' ? REPLICA_DELETE_TOPIC : REPLICATE_TOPIC,
    );
  return { queued: take.length, more: rows.length > room };
}

export interface ReplicaCounts {
  pending: number;
  oldestPendingAt: string | null;
  failed: number;
  purging: number;
  lastReplicatedAt: string | null;
  lastError: { message: string; at: string } | null;
}

export async function replicaCounts(tx: Tx): Promise<ReplicaCounts> {
  const byState = await tx
    .selectFrom('blob_replicas')
    .select([
      'state',
      (eb) => eb.fn.countAll<number>().as('n'),
      (eb) => eb.fn.min('stored_at').as('oldest'),
    ])
    .where('state', 'in', ['pending', 'failed', 'purging'])
    .groupBy('state')
    .execute();
  const of = (state: ReplicaState) => byState.find((r) => r.state === state);
  const last = await tx
    .selectFrom('blob_replicas')
    .select((eb) => eb.fn.max('replicated_at').as('at'))
    .executeTakeFirst();
  const error = await tx
    .selectFrom('blob_replicas')
    .select(['last_error', 'last_error_at'])
    .where('state', 'in', ['pending', 'failed', 'purging'])
    .where('last_error_at', 'is not', null)
    .orderBy('last_error_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  return {
    pending: of('pending')?.n ?? 0,
    oldestPendingAt: of('pending')?.oldest ?? null,
    failed: of('failed')?.n ?? 0,
    purging: of('purging')?.n ?? 0,
    lastReplicatedAt: last?.at ?? null,
    lastError:
      error?.last_error && error.last_error_at
        ? { message: error.last_error, at: error.last_error_at }
        : null,
  };
}

/** What a blob key belongs to, in ids only (for reports: never a name or a filename). */
export type BlobOwner =
  | { kind: 'content'; documentId: string; version: number }
  | { kind: 'thumbnail'; documentId: string; version: number }
  | { kind: 'result-file'; resultId: string; version: number; position: number };

export interface LiveBlob {
  ref: BlobRef;
  owner: BlobOwner;
  /** When its row was written (the backfill's stored_at). */
  createdAt: string;
}

const contentOf = (v: DocumentVersionRow): LiveBlob => ({
  ref: {
    blobKey: v.blob_key,
    tier: v.tier === 'archive' ? 'archive' : 'hot',
    size: v.size,
    sha256: v.sha256,
    chunkBytes: v.chunk_bytes,
    keyId: v.key_id,
    wrapped: v.wrapped_key,
  },
  owner: { kind: 'content', documentId: v.document_id, version: v.version },
  createdAt: v.created_at,
});

const thumbnailOf = (v: DocumentVersionRow): LiveBlob | null =>
  v.thumb_blob_key && v.thumb_key_id && v.thumb_wrapped_key && v.thumb_sha256
    ? {
        ref: {
          blobKey: v.thumb_blob_key,
          tier: 'hot',
          size: v.thumb_size ?? 0,
          sha256: v.thumb_sha256,
          chunkBytes: v.chunk_bytes,
          keyId: v.thumb_key_id,
          wrapped: v.thumb_wrapped_key,
        },
        owner: { kind: 'thumbnail', documentId: v.document_id, version: v.version },
        createdAt: v.created_at,
      }
    : null;

const resultFileOf = (a: ResultAttachmentRow, createdAt: string): LiveBlob => ({
  ref: {
    blobKey: a.blob_key,
    tier: 'hot',
    size: a.size,
    sha256: a.sha256,
    chunkBytes: a.chunk_bytes,
    keyId: a.key_id,
    wrapped: a.wrapped_key,
  },
  owner: { kind: 'result-file', resultId: a.result_id, version: a.version, position: a.position },
  createdAt,
});

/**
 * What `blobKey` is now: a live blob (with what it takes to open it), `purged` (a retention purge
 * removed it for good) or `unknown` (no row points at it).
 */
export async function findLiveBlob(
  tx: Tx,
  blobKey: string,
): Promise<{ live: LiveBlob } | { purged: true } | { unknown: true }> {
  const content = await tx
    .selectFrom('document_versions')
    .selectAll()
    .where('blob_key', '=', blobKey)
    .executeTakeFirst();
  if (content) return content.purged_at === null ? { live: contentOf(content) } : { purged: true };
  const thumbOwner = await tx
    .selectFrom('document_versions')
    .selectAll()
    .where('thumb_blob_key', '=', blobKey)
    .executeTakeFirst();
  if (thumbOwner) {
    const thumb = thumbOwner.purged_at === null ? thumbnailOf(thumbOwner) : null;
    return thumb ? { live: thumb } : { purged: true };
  }
  const file = await tx
    .selectFrom('result_attachments')
    .innerJoin('results', 'results.id', 'result_attachments.result_id')
    .selectAll('result_attachments')
    .select('results.received_at')
    .where('result_attachments.blob_key', '=', blobKey)
    .executeTakeFirst();
  // A result's file that went on a chart is the document version found above.
  if (file) return { live: resultFileOf(file, file.received_at) };
  return { unknown: true };
}

export interface LivePage {
  blobs: LiveBlob[];
  /** Where the next page starts; null after the last. */
  next: LiveCursor | null;
}

export type LiveCursor =
  | { table: 'versions'; documentId: string; version: number }
  | { table: 'results'; resultId: string; version: number; position: number };

/**
 * Every live blob, a page of rows at a time in key order (versions, then files of results not on
 * a chart): what a restore must bring back and what the backfill must copy.
 */
export async function liveBlobsPage(
  tx: Tx,
  after: LiveCursor | null,
  limit: number,
): Promise<LivePage> {
  if (after === null || after.table === 'versions') {
    const rows = await tx
      .selectFrom('document_versions')
      .selectAll()
      .where('purged_at', 'is', null)
      .$if(after !== null, (q) =>
        q.where((eb) => {
          const a = after as Extract<LiveCursor, { table: 'versions' }>;
          return eb.or([
            eb('document_id', '>', a.documentId),
            eb.and([eb('document_id', '=', a.documentId), eb('version', '>', a.version)]),
          ]);
        }),
      )
      .orderBy('document_id')
      .orderBy('version')
      .limit(limit)
      .execute();
    const blobs = rows.flatMap((v) => {
      const thumb = thumbnailOf(v);
      return thumb ? [contentOf(v), thumb] : [contentOf(v)];
    });
    const lastRow = rows.at(-1);
    if (rows.length === limit && lastRow)
      return {
        blobs,
        next: { table: 'versions', documentId: lastRow.document_id, version: lastRow.version },
      };
    // Versions done: the result files start on the next page (or this one when it is empty).
    const first = { table: 'results', resultId: '', version: -1, position: -1 } as const;
    if (blobs.length > 0) return { blobs, next: first };
    return liveBlobsPage(tx, first, limit);
  }
  const rows = await tx
    .selectFrom('result_attachments')
    .innerJoin('results', 'results.id', 'result_attachments.result_id')
    .selectAll('result_attachments')
    .select('results.received_at')
    .where('result_attachments.document_id', 'is', null)
    .where((eb) =>
      eb.or([
        eb('result_attachments.result_id', '>', after.resultId),
        eb.and([
          eb('result_attachments.result_id', '=', after.resultId),
          eb.or([
            eb('result_attachments.version', '>', after.version),
            eb.and([
              eb('result_attachments.version', '=', after.version),
              eb('result_attachments.position', '>', after.position),
            ]),
          ]),
        ]),
      ]),
    )
    .orderBy('result_attachments.result_id')
    .orderBy('result_attachments.version')
    .orderBy('result_attachments.position')
    .limit(limit)
    .execute();
  const lastRow = rows.at(-1);
  return {
    blobs: rows.map((a) => resultFileOf(a, a.received_at)),
    next:
      rows.length === limit && lastRow
        ? {
            table: 'results',
            resultId: lastRow.result_id,
            version: lastRow.version,
            position: lastRow.position,
          }
        : null,
  };
}

/** Which of `blobKeys` have a row already (the backfill skips them). */
export async function trackedAmong(tx: Tx, blobKeys: string[]): Promise<Set<string>> {
  if (blobKeys.length === 0) return new Set();
  const rows = await tx
    .selectFrom('blob_replicas')
    .select('blob_key')
    .where('blob_key', 'in', blobKeys)
    .execute();
  return new Set(rows.map((r) => r.blob_key));
}
