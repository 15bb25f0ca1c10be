// Chains queued audit events every 100 ms (PostgreSQL; src/audit-sealing/). Every
// instance runs it; the database's advisory lock lets one round through at a time, so a lost
// instance leaves nothing unsealed for long. A final round runs when the server stops.
import type { Logger } from 'pino';
import { sealPending } from './index.js';
import type { ServiceDeps } from '../services/deps.js';

export interface SealerJob {
  stop(): Promise<void>;
}

export function startSealerJob(
  deps: Pick<ServiceDeps, 'db' | 'settings'>,
  log: Logger,
  pollMs = 100,
): SealerJob {
  let running: Promise<unknown> = Promise.resolve();
  let busy = false;
  let failing = false;
  const tick = () => {
    if (busy) return;
    busy = true;
    running = sealPending(deps, false)
      .then(() => {
        if (failing) log.info('audit sealing works again');
        failing = false;
      })
      .catch((err: unknown) => {
        // Once per outage: the database's own errors are reported by the requests.
        if (!failing) log.error({ err }, 'could not seal audit events');
        failing = true;
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
        await sealPending(deps, true);
      } catch (err) {
        log.error({ err }, 'could not seal the last audit events');
      }
    },
  };
}
