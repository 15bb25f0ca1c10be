// fsync before acknowledgement, shown by the kernel: under strace, every write answered 2xx was
// preceded, after its request arrived, by a completed fsync of the database's log (SQLite's WAL in
// the server process; on PostgreSQL, pg_wal flushed by the server's backends or its WAL writer)
// and, for an upload, by a completed fsync of the file's blob.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { describeEachEngine, tempDir } from '../helpers/engines.js';
import { sendWrite, serveBuilt, setUpClinic, stop, type WriteKind } from './fault-helpers.js';
import { attachStrace, parseTrace, straceUnavailable, type Syscall } from './strace.js';

const skip = straceUnavailable();
if (skip !== null && process.env.CI === 'true') throw new Error(`CI=true needs strace: ${skip}`);

const SEQUENCE: WriteKind[] = [
  ...Array<WriteKind>(12).fill('note'),
  ...Array<WriteKind>(6).fill('document'),
  ...Array<WriteKind>(6).fill('result'),
];

/** The PostgreSQL processes that may flush a commit of `url`'s database: its backends and the WAL writer. */
async function postgresFlushers(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where (datname = current_database() and pid <> pg_backend_pid())
           or backend_type = 'walwriter'`,
    );
    return rows.map((r) => r.pid);
  } finally {
    await client.end();
  }
}

describeEachEngine('fsync before acknowledgement', ({ engine, url }) => {
  test(
    'each 2xx write follows a completed fsync of the log (and of the blob for uploads)',
    { skip: skip ?? false, timeout: 180_000 },
    async () => {
      const dataDir = tempDir('caretrail-fsync-');
      const env = {
        CARETRAIL_DATABASE_URL: url(),
        CARETRAIL_DATA_DIR: dataDir,
        CARETRAIL_PG_POOL_SIZE: '3',
      };
      const server = await serveBuilt(env);
      try {
        const clinic = await setUpClinic(dataDir, env, server.baseUrl);
        // Open every pooled connection before tracing, so each backend is known.
        await Promise.all(
          ['w1', 'w2', 'w3', 'w4'].map((k) =>
            sendWrite(server.baseUrl, clinic, 'note', `warm-${k}`),
          ),
        );
        const pids = [server.pid, ...(engine === 'postgres' ? await postgresFlushers(url()) : [])];
        const tracer = await attachStrace(
          pids,
          ['-e', 'trace=fsync,fdatasync,read,recvfrom,write,writev,sendto'],
          path.join(dataDir, 'strace.txt'),
        );
        const sent = [];
        for (const [i, kind] of SEQUENCE.entries()) {
          // One at a time: each request's window holds only its own work.
          const write = await sendWrite(server.baseUrl, clinic, kind, `fsync-${kind}-${i}`);
          assert.equal(write.state, 'acked', `${kind} ${i}: ${write.status}`);
          sent.push(write);
        }
        const calls = parseTrace(await tracer.stop());

        const onSocket = (c: Syscall) => c.target.includes('<TCP:');
        const requests = calls.filter(
          (c) =>
            onSocket(c) && /^(read|recvfrom)$/.test(c.name) && /"POST \/api\/v1\//.test(c.args),
        );
        const answers = calls.filter(
          (c) =>
            onSocket(c) &&
            /^(write|writev|sendto)$/.test(c.name) &&
            /"HTTP\/1\.1 20\d/.test(c.args),
        );
        assert.equal(requests.length, SEQUENCE.length, 'every request seen arriving');
        assert.equal(answers.length, SEQUENCE.length, 'every 2xx seen leaving');
        const isLogFlush = (c: Syscall) =>
          /^f(data)?sync$/.test(c.name) &&
          c.result === '0' &&
          (engine === 'sqlite'
            ? c.target.endsWith('caretrail.db-wal>')
            : c.target.includes('/pg_wal/'));
        const isBlobFlush = (c: Syscall) =>
          c.name === 'fsync' && c.result === '0' && c.target.includes(path.join(dataDir, 'blobs'));

        const gaps: number[] = [];
        for (const [i, kind] of SEQUENCE.entries()) {
          const arrived = requests[i]?.start ?? 0;
          const answered = answers[i]?.start ?? 0;
          assert.ok(arrived < answered, `request ${i} answered after it arrived`);
          const within = (c: Syscall) => c.start >= arrived && c.end <= answered;
          const logFlushes = calls.filter((c) => isLogFlush(c) && within(c));
          assert.ok(
            logFlushes.length > 0,
            `${kind} ${i} (${sent[i]?.key}) was answered 2xx with no completed fsync of the database log since it arrived`,
          );
          if (kind === 'document') {
            const blobFlushes = calls.filter((c) => isBlobFlush(c) && within(c));
            assert.ok(blobFlushes.length > 0, `upload ${i} answered before its blob was fsync'd`);
          }
          const lastFlush = Math.max(...logFlushes.map((c) => c.end));
          gaps.push((answered - lastFlush) * 1000);
        }
        console.log(
          `# fsync order (${engine}): ${SEQUENCE.length} writes (12 notes, 6 uploads, 6 results), each answered ` +
            `after a completed log fsync; flush-to-answer ${Math.min(...gaps).toFixed(2)}–${Math.max(...gaps).toFixed(2)} ms`,
        );
      } finally {
        await stop(server);
      }
    },
  );
});
