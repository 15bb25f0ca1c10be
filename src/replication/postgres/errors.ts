// The one error the PostgreSQL replication commands throw: a one-line message for the operator,
// never a stack, a command line or a secret.
export class PgReplicationError extends Error {}
