// The ordered list of schema migrations. Add new ones at the end; never edit a released one.
import type { Migration, MigrationProvider } from 'kysely';
import * as m0001 from './0001-records-core.js';
import * as m0002 from './0002-audit-checkpoints-alerts.js';
import * as m0003 from './0003-documents-outbox.js';
import * as m0004 from './0004-sharing-access.js';
import * as m0005 from './0005-results.js';
import * as m0006 from './0006-result-matching.js';
import * as m0007 from './0007-patient-alerts.js';
import * as m0008 from './0008-idempotency-holder.js';
import * as m0009 from './0009-addendum-release.js';
import * as m0010 from './0010-owner-name-words.js';
import * as m0011 from './0011-patient-search-words.js';
import * as m0012 from './0012-blob-replicas.js';
import * as m0013 from './0013-audit-inbox.js';

const MIGRATIONS: Record<string, Migration> = {
  '0001-records-core': m0001,
  '0002-audit-checkpoints-alerts': m0002,
  '0003-documents-outbox': m0003,
  '0004-sharing-access': m0004,
  '0005-results': m0005,
  '0006-result-matching': m0006,
  '0007-patient-alerts': m0007,
  '0008-idempotency-holder': m0008,
  '0009-addendum-release': m0009,
  '0010-owner-name-words': m0010,
  '0011-patient-search-words': m0011,
  '0012-blob-replicas': m0012,
  '0013-audit-inbox': m0013,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(MIGRATIONS),
};
