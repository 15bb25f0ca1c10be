// Recording a deliberate restore. After a point-in-time restore the replica holds anchors of
// checkpoints the restored database never saw: to verification that is a rollback, as it should
// be. The operator (or the restore command) records the restore: a sealed restore point on the
// replica, and an audit event in the restored log. Anchors signed after the moment restored to and
// before the recording are then reported as "after the restore point" instead of tampering.
import type { Keyring } from '../../blobs/master-key.js';
import { auditedRead } from '../../services/audit.service.js';
import type { RequestContext } from '../../services/context.js';
import type { ServiceDeps } from '../../services/deps.js';
import { auditHead, listAuditEvents } from '../../store/audit.store.js';
import type { ReplicaDestination } from '../destination.js';
import { restorePointName, sealRestorePoint, type RestorePoint } from './format.js';

/**
 * Puts a restore point for the database as it is now on the replica. `restoredTo` is the moment
 * the restore reached (the restore's report); without it, the time of the newest event held,
 * which is right only before the restored server has taken any request.
 */
export async function recordRestorePoint(options: {
  deps: ServiceDeps;
  ctx: RequestContext;
  destination: ReplicaDestination;
  keyring: Keyring;
  restoredTo?: string;
}): Promise<RestorePoint> {
  const { deps, destination, keyring } = options;
  return auditedRead(
    deps,
    options.ctx,
    { action: 'E', type: 'audit.restore-point' },
    async (record) => {
      const now = deps.clock.now().toISOString();
      const head = await auditHead(deps.db.read);
      const newest =
        head.seq > 0
          ? (await listAuditEvents(deps.db.read, { afterSeq: head.seq - 1, limit: 1 }))[0]
          : undefined;
      const restoredTo = new Date(
        options.restoredTo ?? newest?.event.occurredAt ?? now,
      ).toISOString();
      if (restoredTo > now)
        throw new Error(`the moment restored to (${restoredTo}) is in the future`);
      const point: RestorePoint = {
        seq: head.seq,
        chain: head.chain,
        restoredTo,
        recordedAt: now,
      };
      await destination.put(restorePointName(point), sealRestorePoint(keyring, point));
      record.detail = { seq: point.seq, restoredTo: point.restoredTo };
      return point;
    },
  );
}
