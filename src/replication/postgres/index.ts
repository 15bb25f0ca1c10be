// Disaster recovery on PostgreSQL (issue 17) with the field's own tools: pgBackRest for base
// backups, WAL archiving and point-in-time restore; pg_receivewal as a synchronous WAL receiver
// for RPO 0. Caretrail writes and checks their configuration and wraps their commands.
//
// README
//   setup.ts          `caretrail replicate setup`: pgBackRest configuration (stanza "caretrail",
//                     repository = CARETRAIL_REPLICA_URL folder, AES-256-CBC with a pass derived
//                     from the master key, retention by CARETRAIL_REPLICA_RETENTION_DAYS), the
//                     server's archive settings checked (ALTER SYSTEM lines printed; --apply runs
//                     them), stanza-create and check.
//   status.ts         `caretrail replicate status`: backups, newest archived WAL, lag, problems.
//   backup.ts         `caretrail replicate backup [--type full|diff|incr]`, from a timer.
//   verify.ts         every repository file read back, and WAL gaps, named.
//   restore.ts        `caretrail restore --from file:… --to DIR [--at ISO] [--force]`: into a new
//                     data directory, started and promoted; checks the moment and the WAL.
//   wal-receiver.ts   `caretrail replicate receive --spool DIR`: pg_receivewal for RPO 0.
//   watch.ts          in each serving instance: archiving and the receiver watched (monitor part
//                     'database'); in synchronous mode, writes refused (503) while it is away.
//   drill.ts          `caretrail dr drill` on PostgreSQL: the machine lost under load, restored,
//                     RPO and RTO measured.
//   cluster.ts, run.ts, pgbackrest.ts, server-settings.ts, wal-names.ts, cipher-pass.ts: the
//                     pieces (PostgreSQL's tools as the cluster's OS user, pgBackRest's files).
// The operator's guide is docs/DISASTER-RECOVERY.md ("PostgreSQL"). Tests: test/replication/postgres-*.db.test.ts.
export { PgReplicationError } from './errors.js';
export { pgReplicateSetup, type PgSetupOptions, type PgSetupReport } from './setup.js';
export { pgReplicateStatus, type PgReplicationStatus } from './status.js';
export { pgBackup, type PgBackupReport, type PgBackupType } from './backup.js';
export { pgVerify, type PgVerifyReport } from './verify.js';
export { pgRestore, type PgRestoreOptions, type PgRestoreReport } from './restore.js';
export { pgReceiveWal, type PgReceiver, type PgReceiverOptions } from './wal-receiver.js';
export { DEFAULT_CONFIG_FILE } from './pgbackrest.js';
export { pgDrill, type PgDrillOptions, type PgDrillResult } from './drill.js';
