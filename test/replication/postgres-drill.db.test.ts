// The PostgreSQL disaster-recovery drill, run briefly: the built Caretrail server under notes and
// uploads on a private cluster, the machine lost, the database restored from the repository
// alone (plus the WAL receiver's spool when synchronous), Caretrail started on it. Synchronous:
// no acknowledged write is missing. Asynchronous: only the last moment's writes may be. Both:
// the restored audit trail verifies and every restored upload reads back intact.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pgDrill } from '../../src/replication/postgres/index.js';
import { CI, assertCanRun, pgBackRestProblem } from './postgres-helpers.js';

const BUILT = path.resolve('dist/cli/main.js');

function drillProblem(): string | null {
  return (
    pgBackRestProblem() ??
    (fs.existsSync(BUILT) ? null : 'dist/cli/main.js is missing (npm run build:server)')
  );
}

const options = (timeout: number) => ({ skip: CI ? false : (drillProblem() ?? false), timeout });
const lines: string[] = [];
const log = (line: string) => lines.push(line);

test(
  'drill, synchronous: the machine lost under load, restored from the repository and the spool, loses no acknowledged write',
  options(300_000),
  async () => {
    assertCanRun();
    const r = await pgDrill({ workDir: null, seconds: 6, rpoSeconds: 0, rtoSeconds: 600, log });
    const info = `${JSON.stringify(r)}\n${lines.join('\n')}`;
    assert.equal(r.engine, 'postgres');
    assert.equal(r.mode, 'sync');
    assert.ok(r.acknowledged.notes > 0 && r.acknowledged.documents > 0, info);
    assert.deepEqual(r.missing, { notes: 0, documents: 0 }, info);
    assert.equal(r.rpoSeconds, 0);
    assert.ok(r.rtoSeconds > r.restoreSeconds, info);
    assert.equal(r.audit.ok, true, r.audit.message);
    assert.match(r.audit.message, /^Audit trail intact/);
    assert.equal(r.files.bad, 0);
    assert.equal(r.files.ok, r.acknowledged.documents);
    assert.ok((r.postgres.restore?.walFromSpool ?? 0) >= 1, 'the spool supplied the newest WAL');
    assert.equal(r.passed, true, r.problems.join('; '));
  },
);

test(
  'drill, asynchronous: archiving alone restores all but the last moment, with an intact audit trail',
  options(300_000),
  async () => {
    assertCanRun();
    const r = await pgDrill({ workDir: null, seconds: 6, rpoSeconds: 1, rtoSeconds: 600, log });
    const info = `${JSON.stringify(r)}\n${lines.join('\n')}`;
    assert.equal(r.mode, 'async');
    const acknowledged = r.acknowledged.notes + r.acknowledged.documents;
    const missing = r.missing.notes + r.missing.documents;
    assert.ok(acknowledged > 0 && missing < acknowledged / 2, info);
    assert.ok(r.rpoSeconds < r.loadSeconds, info);
    assert.equal(r.postgres.restore?.walFromSpool, 0, 'the repository alone');
    assert.equal(r.audit.ok, true, r.audit.message);
    assert.equal(r.files.bad, 0);
  },
);
