// Audit anchors: a copy of every signed audit checkpoint, off the database, on the replica.
//
// The checkpoints in the database prove the audit log consistent with itself; they cannot show
// that the whole database was rolled back to an older copy, or that its tail was cut off or
// rewritten together with the checkpoint rows. An anchor can: it records what the log held
// (sequence and chain value, signed) when it was shipped, somewhere the database's writer cannot
// reach.
//
// - Shipping (ship.ts): each checkpoint queues an `audit.anchor` outbox item in its own unit of
//   work (services/audit-trail/checkpoint.ts); the relay seals it (sealed.ts: AES-256-GCM under
//   the master keyring, the name bound in) and puts it at
//   `caretrail-anchors/checkpoints/<seq>-<chain prefix>` on CARETRAIL_REPLICA_URL, at least once,
//   retrying with back-off for as long as the replica is away. `anchorShippingStatus` is for
//   status pages; `watchAnchors` reports it to the replication monitor (/readyz).
// - Checking (check.ts): `caretrail audit verify --replica URL` reads every anchor and compares it
//   with the primary: missing (truncated or rolled back), different (rewritten), or unreadable
//   (the replica was tampered with).
// - Restores (restore-point.ts): a deliberate point-in-time restore is recorded as a restore
//   point, after which the anchors of the abandoned history are reported as such.
export { ANCHOR_PREFIX, anchorName, openAnchor, type RestorePoint } from './format.js';
export {
  ANCHOR_RETRY,
  ANCHORS_PART,
  anchorShippingStatus,
  createAnchorHandler,
  watchAnchors,
} from './ship.js';
export type { AnchorShippingStatus } from './ship.js';
export { checkAnchors, describeAnchorCheck } from './check.js';
export type { AnchorCheck, AnchorProblem, AnchorRef } from './check.js';
export { recordRestorePoint } from './restore-point.js';
