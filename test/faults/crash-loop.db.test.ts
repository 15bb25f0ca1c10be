// Crash loop: SIGKILL the server again and again while notes, uploads and device results are being
// written. After every restart each write that was answered 2xx is stored exactly once, a retry
// of an unanswered write (same Idempotency-Key / resultId) is stored once too, and the audit
// chain verifies. Restart times are recorded. CARETRAIL_FAULTS_LONG=1 runs 500 kills per engine.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { test } from 'node:test';
import { findFirstBrokenLink } from '../../src/domain/audit-verify.js';
import { listAuditEvents } from '../../src/store/audit.store.js';
import { openDatabase, type Database } from '../../src/store/database.js';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { runCli } from '../helpers/process.js';
import {
  LONG,
  documentTitle,
  noteBody,
  percentile,
  seededRandom,
  sendWrite,
  serveBuilt,
  setUpClinic,
  signIn,
  sleep,
  stop,
  type SentWrite,
  type Served,
  type WriteKind,
} from './fault-helpers.js';

const KILLS = Number(process.env.CARETRAIL_CRASH_KILLS ?? (LONG ? 500 : 100));
const WRITERS: WriteKind[] = ['note', 'note', 'note', 'note', 'document', 'document', 'result'];

/** How many rows hold each named write, per kind. */
async function storedCounts(db: Database): Promise<Record<WriteKind, Map<string, number>>> {
  const notes = await db.read
    .selectFrom('notes')
    .select(['body as name', db.read.fn.countAll<number>().as('n')])
    .where('kind', '=', 'clinical')
    .groupBy('body')
    .execute();
  const documents = await db.read
    .selectFrom('documents')
    .select(['title as name', db.read.fn.countAll<number>().as('n')])
    .where('status', '=', 'active')
    .groupBy('title')
    .execute();
  const results = await db.read
    .selectFrom('results')
    .select(['source_result_id as name', db.read.fn.countAll<number>().as('n')])
    .groupBy('source_result_id')
    .execute();
  const toMap = (rows: { name: string | null; n: number | string | bigint }[]) =>
    new Map(rows.map((r) => [r.name ?? '', Number(r.n)]));
  return { note: toMap(notes), document: toMap(documents), result: toMap(results) };
}

function nameOf(write: SentWrite): string {
  if (write.kind === 'note') return noteBody(write.key);
  if (write.kind === 'document') return documentTitle(write.key);
  return write.key;
}

describeEachEngine('crash loop', ({ engine, url }) => {
  test(
    `${KILLS} SIGKILLs during concurrent notes, uploads and results lose and duplicate nothing acknowledged`,
    { timeout: (LONG ? 3_600 : 600) * 1000 },
    async () => {
      const seed = Number(process.env.CARETRAIL_FAULTS_SEED ?? Date.now() % 1_000_000);
      const random = seededRandom(seed);
      const dataDir = tempDir('caretrail-crash-');
      const env = { CARETRAIL_DATABASE_URL: url(), CARETRAIL_DATA_DIR: dataDir };
      let server: Served = await serveBuilt(env);
      const clinic = await setUpClinic(dataDir, env, server.baseUrl);
      const checker = await openDatabase(url());
      const writes = new Map<string, SentWrite>();
      const restartMs: number[] = [];
      let inFlightAtKill = 0;
      let retried = 0;
      try {
        for (let cycle = 0; cycle < KILLS; cycle++) {
          // Writers run until the kill; each remembers what it sent and what came back.
          let dead = false;
          const workers = WRITERS.map(async (kind, w) => {
            for (let i = 0; !dead; i++) {
              const key = `c${cycle}-w${w}-${i}`;
              const sent = await sendWrite(server.baseUrl, clinic, kind, key);
              writes.set(key, sent);
              if (sent.state === 'unknown') return;
            }
          });
          await sleep(120 + Math.floor(random() * 400));
          server.child.kill('SIGKILL');
          const exit = await server.exited;
          dead = true;
          await Promise.all(workers);
          assert.equal(exit.signal, 'SIGKILL');

          server = await serveBuilt(env);
          restartMs.push(server.startMs);
          clinic.token = await signIn(server.baseUrl, clinic.email);

          // Every acknowledged write is there exactly once; none is there twice.
          const counts = await storedCounts(checker);
          for (const write of writes.values()) {
            const n = counts[write.kind].get(nameOf(write)) ?? 0;
            if (write.state === 'acked')
              assert.equal(
                n,
                1,
                `cycle ${cycle} (seed ${seed}): acknowledged ${write.kind} ${write.key} stored ${n} times`,
              );
            else
              assert.ok(
                n <= 1,
                `cycle ${cycle} (seed ${seed}): ${write.kind} ${write.key} stored ${n} times`,
              );
          }
          // A client that got no answer retries with the same key: stored once, answered 2xx.
          const unknown = [...writes.values()].filter((w) => w.state === 'unknown');
          inFlightAtKill += unknown.length;
          for (const write of unknown) {
            const again = await sendWrite(server.baseUrl, clinic, write.kind, write.key);
            assert.equal(
              again.state,
              'acked',
              `cycle ${cycle} (seed ${seed}): retry of ${write.kind} ${write.key}: ${again.status ?? again.error}`,
            );
            writes.set(write.key, again);
            retried++;
          }
          const afterRetry = await storedCounts(checker);
          for (const write of unknown) {
            const n = afterRetry[write.kind].get(nameOf(write)) ?? 0;
            assert.equal(n, 1, `retried ${write.kind} ${write.key} stored ${n} times`);
          }
          if (cycle % 10 === 9) {
            const broken = findFirstBrokenLink(await listAuditEvents(checker.read));
            assert.equal(broken, null, `cycle ${cycle}: audit chain broken at ${broken}`);
          }
        }

        // Every acknowledged upload reads back byte for byte (checked against its SHA-256).
        const documents = [...writes.values()].filter((w) => w.kind === 'document');
        const rows = await checker.read
          .selectFrom('documents')
          .select(['id', 'title'])
          .where('status', '=', 'active')
          .execute();
        const idByTitle = new Map(rows.map((r) => [r.title, r.id]));
        for (const doc of documents) {
          const id = idByTitle.get(documentTitle(doc.key));
          assert.ok(id, `document ${doc.key} is missing`);
          const res = await fetch(`${server.baseUrl}/api/v1/documents/${id}/content`, {
            headers: { authorization: `Bearer ${clinic.token}` },
          });
          assert.equal(res.status, 200);
          const sha = createHash('sha256')
            .update(Buffer.from(await res.arrayBuffer()))
            .digest('hex');
          assert.equal(sha, doc.sha256, `document ${doc.key} reads back different bytes`);
        }
      } finally {
        await stop(server);
        await checker.close();
      }

      // The whole trail, checkpoints included, verifies with the operator's command.
      const verify = await runCli(['audit', 'verify'], env);
      assert.equal(verify.code, 0, `audit verify: ${verify.stdout}${verify.stderr}`);

      const acked = [...writes.values()].filter((w) => w.state === 'acked');
      const byKind = (k: WriteKind) => acked.filter((w) => w.kind === k).length;
      const line =
        `# crash loop (${engine}, seed ${seed}): ${KILLS} SIGKILLs, ${acked.length} writes acknowledged ` +
        `(notes ${byKind('note')}, documents ${byKind('document')}, results ${byKind('result')}), ` +
        `${inFlightAtKill} in flight at a kill and retried (${retried} retries, all stored once); ` +
        `restart p50 ${percentile(restartMs, 50)} ms, p99 ${percentile(restartMs, 99)} ms, max ${Math.max(...restartMs)} ms`;
      console.log(line);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  );
});
