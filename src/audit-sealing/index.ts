// Audit sealing (issue 18): the audit chain without a global lock.
//
//   index.ts        sealPending, awaitAuditSealed (audit reads call it first), auditUnsealedTail
//   inbox.store.ts  the inbox table and one sealing round's SQL (the horizon)
//   job.ts          the sealer job every instance runs
//
// On PostgreSQL, units of work queue their audit events in audit_inbox without a lock
// (writeAuditEvent), and sealing rounds chain them (inbox.store.ts explains the
// horizon). The sealer job runs a round every 100 ms in every instance; the advisory lock lets
// one through at a time. Audit reads (search, export, the access report, verification, the
// unusual-access rule) first wait for what was committed before them to be sealed, so an event
// is never missing from them once its request was answered, and never shown unsealed.
// SQLite appends at the head in the unit of work (one writer): every function here is a no-op.
import type { Database } from '../store/database.js';
import {
  newestQueuedXid,
  queuedUpTo,
  sealAuditInbox,
  unsealedTail,
  type UnsealedTail,
} from './inbox.store.js';
import { sealsAudit } from '../services/audit.service.js';
import type { ServiceDeps } from '../services/deps.js';

/** Rows per sealing transaction. */
export const SEAL_BATCH = 2000;
/** How long an audit read waits for the events committed before it to be sealed. */
export const AWAIT_SEALED_MS = 2000;

type SealDeps = Pick<ServiceDeps, 'db' | 'settings'>;

/**
 * Seals everything below the horizon, a batch per transaction. Resolves to the number of events
 * sealed, or null when `wait` is false and another round (this instance's or another's) holds
 * the lock.
 */
export async function sealPending(deps: SealDeps, wait: boolean): Promise<number | null> {
  if (!sealsAudit(deps)) return 0;
  let total = 0;
  for (;;) {
    const round = await deps.db.write((tx) => sealAuditInbox(tx, { limit: SEAL_BATCH, wait }));
    if (round.busy) return total === 0 ? null : total;
    total += round.sealed;
    if (round.sealed < SEAL_BATCH) return total;
  }
}

// One round at a time per process: concurrent readers share it instead of queueing on the lock.
const rounds = new WeakMap<Database, Promise<number | null>>();

function sharedRound(deps: SealDeps): Promise<number | null> {
  let round = rounds.get(deps.db);
  if (!round) {
    round = sealPending(deps, true).finally(() => rounds.delete(deps.db));
    rounds.set(deps.db, round);
  }
  return round;
}

/**
 * Waits until every event committed before the call is sealed (at most `timeoutMs`; events of
 * a transaction that stays in flight longer hold the horizon back and stay unsealed: not shown,
 * and reported by verification as the unsealed tail).
 */
export async function awaitAuditSealed(deps: SealDeps, timeoutMs = AWAIT_SEALED_MS): Promise<void> {
  if (!sealsAudit(deps)) return;
  const target = await newestQueuedXid(deps.db.read);
  if (target === null) return;
  const deadline = Date.now() + timeoutMs;
  while (await queuedUpTo(deps.db.read, target)) {
    if (Date.now() >= deadline) return;
    await sharedRound(deps);
    if (!(await queuedUpTo(deps.db.read, target))) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Events committed but not sealed yet (always none on SQLite). */
export async function auditUnsealedTail(deps: SealDeps): Promise<UnsealedTail> {
  if (!sealsAudit(deps)) return { count: 0, oldestAt: null };
  return unsealedTail(deps.db.read);
}
