// Assembles a running Caretrail from a configuration: database, services, HTTP app.
import path from 'node:path';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { loadAuditSigner } from './audit-signing-key.js';
import { startCheckpointJob, type CheckpointJob } from './jobs/audit-checkpoint.job.js';
import { startSealerJob, type SealerJob } from './audit-sealing/job.js';
import type { Config } from './config.js';
import { systemClock, type Clock } from './domain/clock.js';
import { buildApp } from './http/app.js';
import { defaultWebDir } from './http/web-app.js';
import { openDatabase, type Database, type OpenOptions } from './store/database.js';
import { auditTrailSettingsOf } from './services/audit-trail/index.js';
import { createServices, type Services } from './services/services.js';
import { openBlobStore, type BlobStoreOptions } from './blobs/index.js';
import { loadKeyring } from './blobs/master-key.js';
import {
  createReplicationMonitor,
  databaseReplication,
  type ReplicationMonitor,
} from './replication/index.js';
import { LAST_DRILL_FILE } from './replication/drill.js';
import { readLastDrill } from './replication/backups.service.js';
import { createVault, type Vault } from './blobs/vault.js';
import { createCipherPool } from './blobs/cipher-pool.js';
import {
  createDocumentHandlers,
  startLifecycleJob,
  type LifecycleJob,
} from './jobs/document-jobs.js';
import { createNotificationHandlers } from './jobs/notifications.js';
import type { HostResolver } from './services/webhook-address.js';
import { createOutboxRelay, type OutboxRelay } from './jobs/outbox-relay.js';
import { createAnchorHandler, watchAnchors } from './replication/anchors/index.js';
import { openReplicaDestination } from './replication/destination.js';
import { startMllpEndpoint } from './integrations/mllp-endpoint.js';
import type { MllpListener } from './integrations/mllp-listener.js';
import { startRedirectListener, type RedirectListener } from './http/redirect-listener.js';
import { createTlsReloader, tlsServerOptions, type TlsReloader } from './tls-credentials.js';
import {
  openBlobReplication,
  type BlobReplication,
  type BlobReplicationSettings,
} from './replication/blobs/index.js';

export interface Runtime {
  app: Awaited<ReturnType<typeof buildApp>>;
  db: Database;
  services: Services;
  vault: Vault;
  /** The outbox relay; polls only after startJobs, but runUntilIdle works any time (tests). */
  relay: OutboxRelay;
  /** Copies of every blob on CARETRAIL_BLOB_REPLICA_URL: lag (status()), backfill; off without it. */
  blobReplication: BlobReplication;
  /** The archive tier job; runs periodically after startJobs. */
  lifecycle(): LifecycleJob | null;
  /** Background work of a serving instance (audit checkpoints, outbox relay, archive tier). */
  startJobs(): void;
  /** Starts the HL7 v2 MLLP listener (CARETRAIL_MLLP_PORT); closed by close(). */
  listenMllp(): Promise<MllpListener>;
  /** Starts the plain-HTTP listener that only redirects (CARETRAIL_HTTP_REDIRECT_PORT). */
  listenRedirect(): Promise<RedirectListener>;
  /** Off-site replication's health (src/replication/): parts registered when configured. */
  replication: ReplicationMonitor;
  /** The certificate of HTTPS and MLLP over TLS, reloadable (SIGHUP); null without TLS. */
  tls: TlsReloader | null;
  close(): Promise<void>;
}

/** Encrypted file storage from the configuration: the blob store and the master keys. */
export function openVault(config: Config, options: BlobStoreOptions = {}): Vault {
  return createVault(
    openBlobStore(config.blobUrl, options),
    loadKeyring(config.dataDir, config.masterKey || undefined),
    config.cipherThreads > 0 ? createCipherPool(config.cipherThreads) : null,
  );
}

/** The use cases over an open database, with the audit signing key from the configuration. */
export function servicesFor(
  config: Config,
  db: Database,
  log: Logger,
  clock: Clock = systemClock,
  vault: Vault = openVault(config),
): Services {
  return createServices(
    { db, clock, log, settings: config, vault },
    {
      signer: loadAuditSigner(config.dataDir, config.auditSigningKey || undefined),
      settings: auditTrailSettingsOf(config),
    },
  );
}

export async function createRuntime(
  config: Config,
  log: Logger,
  options: {
    clock?: Clock;
    database?: OpenOptions;
    blobs?: BlobStoreOptions;
    random?: () => number;
    /** How webhook receiver names are resolved (tests: their own DNS server). */
    resolveHost?: HostResolver;
    /** Blob replication's bounds and retry delays (tests: short ones). */
    blobReplication?: BlobReplicationSettings;
  } = {},
): Promise<Runtime> {
  const monitor = createReplicationMonitor();
  const replication = databaseReplication(config, log);
  const db = await openDatabase(config.databaseUrl, {
    ...replication?.openOptions,
    pgPoolSize: config.pgPoolSize,
    maxBatch: config.sqliteMaxBatch,
    onFailStop: (source, err) => {
      // The error's code only: messages can carry paths, never needed to act on this.
      log.fatal(
        { failStop: source, code: (err as { code?: unknown }).code ?? null },
        `fail-stop: a write to the ${source === 'database' ? 'database' : 'file store'} failed on disk; ` +
          'every write is refused and /readyz answers 503 until an operator checks the disk and restarts the server',
      );
    },
    ...options.database,
  });
  try {
    const applied = await db.migrate();
    if (applied.length > 0) log.info({ migrations: applied }, 'database schema updated');
    const clock = options.clock ?? systemClock;
    const vault = openVault(config, {
      ...options.blobs,
      onFatalIo: (err) => {
        db.failStop('files', err);
      },
    });
    replication?.attach(db, vault.keyring, monitor);
    const services = servicesFor(config, db, log, clock, vault);
    services.deps.replication = monitor;
    services.deps.lastDrill = () => readLastDrill(path.join(config.dataDir, LAST_DRILL_FILE));
    const notifications = createNotificationHandlers({
      db,
      clock,
      vault,
      settings: config,
      ...(options.resolveHost ? { resolveHost: options.resolveHost } : {}),
    });
    const documentJobs = createDocumentHandlers({
      vault,
      makeVersionPreview: services.documents.makeVersionPreview,
    });
    const s3Credentials = options.blobs?.s3Credentials;
    const blobReplication = openBlobReplication(
      {
        db,
        clock,
        log,
        vault,
        onQueued: () => {
          relay.kick();
        },
        monitor,
      },
      {
        url: config.blobReplicaUrl,
        storeOptions: s3Credentials ? { s3Credentials } : {},
        ...(options.blobReplication ? { settings: options.blobReplication } : {}),
      },
    );
    const relay = createOutboxRelay(
      { db, clock, log },
      {
        ...blobReplication.handlers,
        preview: documentJobs.preview,
        'blob.delete': documentJobs.blobDelete,
        event: notifications.event,
        deliver: notifications.deliver,
        mail: notifications.mail,
        // Checkpoints queue anchors only while there is a replica (auditTrailSettingsOf).
        'audit.anchor': createAnchorHandler(
          config.replicaUrl === '' ? null : openReplicaDestination(config.replicaUrl),
          vault.keyring,
        ),
      },
      {
        maxAttempts: config.deliveryMaxAttempts,
        backoffMs: config.deliveryBackoffMs,
        ...(options.random ? { random: options.random } : {}),
      },
    );
    // Synchronous mode covers the files too: an upload answers once its bytes are on the replica.
    if (config.replicaSync && blobReplication.enabled)
      services.deps.blobReplicaSync = blobReplication;
    services.deps.onOutbox = () => {
      relay.kick();
    };
    const tlsReloader =
      config.tlsCert === ''
        ? null
        : createTlsReloader({ certFile: config.tlsCert, keyFile: config.tlsKey }, log);
    const app = await buildApp({
      services,
      log,
      bodyLimitBytes: config.bodyLimitBytes,
      maxUploadBytes: config.maxUploadBytes,
      trustProxy: config.trustProxy,
      requestTimeoutMs: config.requestTimeoutSeconds * 1000,
      maxConnections: config.maxConnections,
      webDir: defaultWebDir(),
      https: tlsReloader ? tlsServerOptions(tlsReloader.material()) : null,
    });
    if (tlsReloader && app.server instanceof tls.Server) tlsReloader.add(app.server);
    let redirect: RedirectListener | null = null;
    let checkpoints: CheckpointJob | null = null;
    let sealer: SealerJob | null = null;
    let lifecycle: LifecycleJob | null = null;
    let mllp: MllpListener | null = null;
    let replicationStarted = false;
    const anchors = config.replicaUrl === '' ? null : watchAnchors({ db, clock, log }, monitor);
    return {
      app,
      db,
      services,
      vault,
      relay,
      blobReplication,
      lifecycle: () => lifecycle,
      replication: monitor,
      startJobs() {
        if (replication && !replicationStarted) {
          replicationStarted = true;
          replication.start().catch((err: unknown) => {
            log.error({ err }, 'replication could not start');
          });
        }
        sealer ??= startSealerJob(services.deps, log);
        checkpoints ??= startCheckpointJob(services.auditTrail, db, log);
        relay.start();
        blobReplication.start();
        lifecycle ??= startLifecycleJob(
          { db, vault, clock, log },
          {
            archiveAfterDays: config.archiveAfterDays,
            intervalMinutes: config.lifecycleIntervalMinutes,
          },
        );
      },
      async listenMllp() {
        mllp ??= await startMllpEndpoint(services, config, log, tlsReloader);
        return mllp;
      },
      async listenRedirect() {
        if (config.httpRedirectPort === null) throw new Error('No redirect port configured.');
        redirect ??= await startRedirectListener({
          host: config.host,
          port: config.httpRedirectPort,
          publicUrl: config.publicUrl,
          log,
        });
        return redirect;
      },
      tls: tlsReloader,
      async close() {
        // Devices first: messages being stored are answered before the database closes.
        await mllp?.close();
        await redirect?.close();
        // A keep-alive connection whose last answer was still being flushed when closing began
        // is not idle yet at that moment: sweep idle connections until the server has stopped.
        const sweep = setInterval(() => {
          app.server.closeIdleConnections();
        }, 100);
        try {
          await app.close();
        } finally {
          clearInterval(sweep);
        }
        // The last events sealed, then the final checkpoint signs them.
        await sealer?.stop();
        await checkpoints?.stop();
        await relay.stop();
        await blobReplication.close();
        await lifecycle?.stop();
        notifications.close();
        anchors?.stop();
        // Ships what was committed last: a clean stop leaves nothing behind on the primary only.
        if (replicationStarted) await replication?.stop();
        await vault.store.close();
        await vault.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
