// Assembles a running Caretrail from a configuration: database, services, HTTP app.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { systemClock, type Clock } from './domain/clock.js';
import { buildApp } from './http/app.js';
import { openDatabase, type Database, type OpenOptions } from './store/database.js';
import { createServices, type Services } from './services/services.js';

export interface Runtime {
  app: Awaited<ReturnType<typeof buildApp>>;
  db: Database;
  services: Services;
  close(): Promise<void>;
}

export async function createRuntime(
  config: Config,
  log: Logger,
  options: { clock?: Clock; database?: OpenOptions } = {},
): Promise<Runtime> {
  const db = await openDatabase(config.databaseUrl, {
    pgPoolSize: config.pgPoolSize,
    maxBatch: config.sqliteMaxBatch,
    ...options.database,
  });
  try {
    const applied = await db.migrate();
    if (applied.length > 0) log.info({ migrations: applied }, 'database schema updated');
    const services = createServices({
      db,
      clock: options.clock ?? systemClock,
      log,
      settings: config,
    });
    const app = await buildApp({
      services,
      log,
      bodyLimitBytes: config.bodyLimitBytes,
      trustProxy: config.trustProxy,
    });
    return {
      app,
      db,
      services,
      async close() {
        await app.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
