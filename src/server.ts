// Assembles a running Caretrail from a configuration: database, services, HTTP app.
import type { Logger } from 'pino';
import { loadAuditSigner } from './audit-signing-key.js';
import { startCheckpointJob, type CheckpointJob } from './jobs/audit-checkpoint.job.js';
import type { Config } from './config.js';
import { systemClock, type Clock } from './domain/clock.js';
import { buildApp } from './http/app.js';
import { openDatabase, type Database, type OpenOptions } from './store/database.js';
import { createServices, type Services } from './services/services.js';

export interface Runtime {
  app: Awaited<ReturnType<typeof buildApp>>;
  db: Database;
  services: Services;
  /** Background work of a serving instance (audit checkpoints). */
  startJobs(): void;
  close(): Promise<void>;
}

/** The use cases over an open database, with the audit signing key from the configuration. */
export function servicesFor(
  config: Config,
  db: Database,
  log: Logger,
  clock: Clock = systemClock,
): Services {
  return createServices(
    { db, clock, log, settings: config },
    {
      signer: loadAuditSigner(config.dataDir, config.auditSigningKey || undefined),
      settings: {
        checkpointEveryEvents: config.auditCheckpointEvents,
        checkpointEveryMs: config.auditCheckpointSeconds * 1000,
        alertDistinctPatients: config.alertDistinctPatients,
        alertWindowMinutes: config.alertWindowMinutes,
      },
    },
  );
}

export async function createRuntime(
  config: Config,
  log: Logger,
  options: { clock?: Clock; database?: OpenOptions; unauditedReadsForBenchmark?: boolean } = {},
): Promise<Runtime> {
  const db = await openDatabase(config.databaseUrl, {
    pgPoolSize: config.pgPoolSize,
    maxBatch: config.sqliteMaxBatch,
    ...options.database,
  });
  try {
    const applied = await db.migrate();
    if (applied.length > 0) log.info({ migrations: applied }, 'database schema updated');
    const services = servicesFor(config, db, log, options.clock ?? systemClock);
    if (options.unauditedReadsForBenchmark) services.deps.unauditedReadsForBenchmark = true;
    const app = await buildApp({
      services,
      log,
      bodyLimitBytes: config.bodyLimitBytes,
      trustProxy: config.trustProxy,
    });
    let checkpoints: CheckpointJob | null = null;
    return {
      app,
      db,
      services,
      startJobs() {
        checkpoints ??= startCheckpointJob(services.auditTrail, log);
      },
      async close() {
        await app.close();
        await checkpoints?.stop();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
