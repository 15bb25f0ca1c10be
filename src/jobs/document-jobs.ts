// Background work on documents: thumbnails and DICOM metadata (outbox), blob removal after a
// retention purge (outbox), and the archive tier move of files nobody read for a while.
import type { Logger } from 'pino';
import type { Vault } from '../blobs/vault.js';
import type { Clock } from '../domain/clock.js';
import type { Database } from '../store/database.js';
import { runAlone } from '../store/job-lock.js';
import { updateDocumentVersion, versionsToArchive } from '../store/document.store.js';
import type { OutboxHandler } from './outbox-relay.js';

export function createDocumentHandlers(deps: {
  vault: Vault;
  makeVersionPreview: (documentId: string, version: number) => Promise<void>;
}): { preview: OutboxHandler; blobDelete: OutboxHandler } {
  return {
    preview: {
      kind: 'io',
      run: async (payload) => {
        const { documentId, version } = payload as { documentId: string; version: number };
        await deps.makeVersionPreview(documentId, version);
      },
    },
    blobDelete: {
      kind: 'io',
      run: async (payload) => {
        await deps.vault.store.delete((payload as { key: string }).key);
      },
    },
  };
}

/**
 * Moves every hot version not read for `days` days to the archive tier, in batches. Idempotent
 * and resumable: a version is marked archived only after its blob moved, and moving an archived
 * blob again does nothing. Returns how many versions moved.
 */
export async function archiveIdleVersions(
  deps: { db: Database; vault: Vault; clock: Clock; log: Logger },
  days: number,
): Promise<number> {
  if (days <= 0) return 0;
  let moved = 0;
  for (;;) {
    const now = deps.clock.now();
    const before = new Date(now.getTime() - days * 86_400_000).toISOString();
    const batch = await versionsToArchive(deps.db.read, before, 100);
    if (batch.length === 0) return moved;
    for (const v of batch) {
      await deps.vault.store.archive(v.blob_key);
      await deps.db.write((tx) =>
        updateDocumentVersion(
          tx,
          v.document_id,
          v.version,
          { tier: 'archive', archived_at: deps.clock.now().toISOString() },
          { tier: 'hot', notPurged: true },
        ),
      );
      moved += 1;
    }
    deps.log.info({ moved }, 'archived idle document versions');
  }
}

export interface LifecycleJob {
  runOnce(): Promise<number>;
  stop(): Promise<void>;
}

export function startLifecycleJob(
  deps: { db: Database; vault: Vault; clock: Clock; log: Logger },
  settings: { archiveAfterDays: number; intervalMinutes: number },
): LifecycleJob {
  let running: Promise<number> | null = null;
  const runOnce = async (): Promise<number> => {
    while (running) await running.catch(() => 0);
    // One instance at a time moves files (src/store/job-lock.ts); the others skip this run.
    running = runAlone(deps.db, 'archive', () =>
      archiveIdleVersions(deps, settings.archiveAfterDays),
    ).then((r) => (r.ran ? r.value : 0));
    try {
      return await running;
    } finally {
      running = null;
    }
  };
  const timer = setInterval(() => {
    if (running) return;
    runOnce().catch((err: unknown) => {
      deps.log.warn({ err }, 'archive job failed; it will resume on its next run');
    });
  }, settings.intervalMinutes * 60_000);
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      while (running) await running.catch(() => 0);
    },
  };
}
