// Signs the audit chain head regularly (at least every N events or S seconds while events
// arrive), and once more when the server stops, so a cut-off tail is detectable.
import type { Logger } from 'pino';
import type { AuditTrailService } from '../services/audit-trail.service.js';

export interface CheckpointJob {
  stop(): Promise<void>;
}

export function startCheckpointJob(
  auditTrail: AuditTrailService,
  log: Logger,
  pollMs = 500,
): CheckpointJob {
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    // A long re-verification must not pile up behind itself.
    if (busy) return;
    busy = true;
    running = auditTrail
      .checkpointIfDue()
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
        await auditTrail.checkpointIfDue(true);
      } catch (err) {
        log.error({ err }, 'could not sign the final audit checkpoint');
      }
    },
  };
}
