// Signs the audit chain head regularly (at least every N events or S seconds while events
// arrive), and once more when the server stops, so a cut-off tail is detectable.
import type { Logger } from 'pino';
import type { AuditTrailService } from '../services/audit-trail.service.js';
import type { Database } from '../store/database.js';
import { runAlone } from '../store/job-lock.js';

export interface CheckpointJob {
  stop(): Promise<void>;
}

export function startCheckpointJob(
  auditTrail: AuditTrailService,
  db: Database,
  log: Logger,
  pollMs = 500,
): CheckpointJob {
  // One instance at a time signs (src/store/job-lock.ts): the others skip their tick.
  const signAlone = (force: boolean) =>
    runAlone(db, 'checkpoint', () => auditTrail.checkpointIfDue(force)).then((r) =>
      r.ran ? r.value : null,
    );
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    // A long re-verification must not pile up behind itself.
    if (busy) return;
    busy = true;
    running = signAlone(false)
      .then((seq) => {
        if (seq !== null) log.debug({ seq }, 'audit checkpoint signed');
      })
      .catch((err: unknown) => {
        log.error({ err }, 'could not sign an audit checkpoint');
      })
      .finally(() => {
        busy = false;
      });
  };
  const timer = setInterval(tick, pollMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
      try {
        await signAlone(true);
      } catch (err) {
        log.error({ err }, 'could not sign the final audit checkpoint');
      }
    },
  };
}
