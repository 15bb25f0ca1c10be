// The outbox relay: claims due outbox items with a lease, runs the handler of their topic, and
// marks them done, or due again after an exponential backoff with jitter, or dead after the
// last attempt. At least once: a handler may run again after a crash, so handlers are idempotent
// and receivers dedupe by event id.
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';
import { safeError } from '../log.js';
import type { Database } from '../store/database.js';
import { claimDue, markDone, markFailed, type OutboxTopic } from '../store/outbox.store.js';
import type { OutboxRow, Tx } from '../store/tables.js';

/** A handler failure that no retry can fix: the item is dead-lettered at once. */
export class PermanentFailure extends Error {}

type OutboxWork =
  /** Work outside the database (a webhook, a blob); done is recorded after it succeeds. */
  | { kind: 'io'; run: (payload: unknown, row: OutboxRow) => Promise<void> }
  /** Database-only work, committed together with the item's completion (exactly once). */
  | { kind: 'tx'; run: (tx: Tx, payload: unknown, row: OutboxRow) => Promise<void> };

export type OutboxHandler = OutboxWork & {
  /** The topic's own retry limits (audit anchors wait out a replica outage of any length). */
  retry?: { maxAttempts: number; maxBackoffMs: number };
};

export interface RelaySettings {
  maxAttempts: number;
  backoffMs: number;
  maxBackoffMs?: number;
  pollMs?: number;
  batch?: number;
  leaseMs?: number;
  random?: () => number;
}

export interface OutboxRelay {
  /** Starts polling (a serving instance); until then only runUntilIdle processes items. */
  start(): void;
  /** Look for work now (after a commit that queued some). */
  kick(): void;
  /** Processes due items until none is left (tests, command line). */
  runUntilIdle(): Promise<void>;
  stop(): Promise<void>;
}

/** Delay before attempt `attempts + 1`: base × 2^(attempts-1), capped, with "equal jitter". */
export function backoffDelay(
  attempts: number,
  baseMs: number,
  maxMs: number,
  random: () => number,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

export function createOutboxRelay(
  deps: { db: Database; clock: Clock; log: Logger },
  handlers: Partial<Record<OutboxTopic, OutboxHandler>>,
  settings: RelaySettings,
): OutboxRelay {
  const { db, clock, log } = deps;
  const pollMs = settings.pollMs ?? 500;
  const batch = settings.batch ?? 8;
  const leaseMs = settings.leaseMs ?? 5 * 60_000;
  const maxBackoff = settings.maxBackoffMs ?? 3_600_000;
  const random = settings.random ?? Math.random;
  let started = false;
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<number> | null = null;
  let again = false;

  async function fail(row: OutboxRow, err: unknown): Promise<void> {
    const message = (err instanceof Error ? String(safeError(err).message) : String(err)).slice(
      0,
      300,
    );
    const retry = handlers[row.topic as OutboxTopic]?.retry;
    const last =
      err instanceof PermanentFailure ||
      row.attempts >= (retry?.maxAttempts ?? settings.maxAttempts);
    const retryAt = last
      ? null
      : new Date(
          clock.now().getTime() +
            backoffDelay(
              row.attempts,
              settings.backoffMs,
              retry?.maxBackoffMs ?? maxBackoff,
              random,
            ),
        ).toISOString();
    await db.write((tx) => markFailed(tx, row.id, row.attempts, message, retryAt));
    (last ? log.error.bind(log) : log.warn.bind(log))(
      { outboxId: row.id, topic: row.topic, attempts: row.attempts, error: message },
      last ? 'outbox item dead-lettered' : 'outbox item failed; will retry',
    );
  }

  async function handle(row: OutboxRow): Promise<void> {
    const handler = handlers[row.topic as OutboxTopic];
    try {
      if (!handler) throw new PermanentFailure(`no handler for topic ${row.topic}`);
      const payload: unknown = JSON.parse(row.payload);
      if (handler.kind === 'tx') {
        await db.write(async (tx) => {
          await handler.run(tx, payload, row);
          await markDone(tx, row.id, row.attempts, clock.now().toISOString());
        });
      } else {
        await handler.run(payload, row);
        await db.write((tx) => markDone(tx, row.id, row.attempts, clock.now().toISOString()));
      }
    } catch (err) {
      await fail(row, err).catch((e: unknown) => {
        log.error({ err: e, outboxId: row.id }, 'could not record an outbox failure');
      });
    }
  }

  /** One pass: claim a batch and handle it; returns how many items were handled. */
  async function pass(): Promise<number> {
    const now = clock.now();
    const rows = await db.write((tx) =>
      claimDue(tx, now.toISOString(), new Date(now.getTime() + leaseMs).toISOString(), batch),
    );
    await Promise.all(rows.map(handle));
    return rows.length;
  }

  function schedule(delay: number): void {
    if (stopped || !started) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      void loop();
    }, delay);
    timer.unref();
  }

  async function loop(): Promise<void> {
    if (running) {
      // A pass is under way (maybe runUntilIdle's): look again after it, and keep polling.
      again = true;
      schedule(pollMs);
      return;
    }
    let handled = 0;
    try {
      running = pass();
      handled = await running;
    } catch (err) {
      log.error({ err }, 'outbox relay pass failed');
    } finally {
      running = null;
    }
    const more = handled > 0 || again;
    again = false;
    schedule(more ? 0 : pollMs);
  }

  return {
    start() {
      started = true;
      schedule(0);
    },
    kick() {
      schedule(0);
    },
    async runUntilIdle() {
      for (;;) {
        while (running) await running.catch(() => 0);
        running = pass();
        const handled = await running.finally(() => {
          running = null;
        });
        if (handled === 0) return;
      }
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      while (running) await running.catch(() => 0);
    },
  };
}
