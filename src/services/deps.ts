// What every use case may use, wired once at start-up.
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Clock } from '../domain/clock.js';
import type { Vault } from '../blobs/vault.js';
import type { Database } from '../store/database.js';
import type { ReplicationMonitor } from '../replication/index.js';
import type { LastDrill } from '../replication/backups.service.js';
import type { BlobReplication } from '../replication/blobs/index.js';
import type { RequestContext } from './context.js';

export type ServiceSettings = Pick<
  Config,
  | 'sessionTtlMinutes'
  | 'loginMaxFailures'
  | 'loginIpMaxFailures'
  | 'loginLockoutMinutes'
  | 'publicUrl'
  | 'maxUploadBytes'
  | 'uploadStallSeconds'
  | 'previewMaxBytes'
  | 'webhookAllowPrivate'
  | 'sessionIdleMinutes'
  | 'invitationTtlHours'
  | 'breakGlassMinutes'
  | 'ownerReleaseDelayHours'
  | 'resultMaxBytes'
  | 'resultFallbackMatch'
  | 'blobReplicaUrl'
  | 'auditAppend'
>;

export interface ServiceDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  settings: ServiceSettings;
  /** Encrypted file storage (blob store + master keys). */
  vault: Vault;
  /** Off-site replication's health, when the server replicates (readiness, Backups page). */
  replication?: ReplicationMonitor;
  /** The last `caretrail dr drill` result kept in the data folder (Backups page). */
  lastDrill?: () => Promise<LastDrill>;
  /**
   * Synchronous replication with a blob replica (CARETRAIL_REPLICA_SYNC and
   * CARETRAIL_BLOB_REPLICA_URL): a stored file is copied there before its row commits.
   */
  blobReplicaSync?: Pick<BlobReplication, 'copyNow' | 'dropCopy'>;
  /** Called after a commit that queued outbox work, so the relay picks it up at once. */
  onOutbox?: () => void;
  /** Called after a read that disclosed patient data was committed (unusual-access rule); must not throw. */
  onPatientRead?: (ctx: RequestContext) => void;
}
