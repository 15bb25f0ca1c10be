// Scheduled jobs run in one instance at a time (issue 18): on PostgreSQL two instances' runs of
// the same job never overlap, a run skipped while another holds the job goes ahead once it
// ends, and a holder that dies frees the job with its connection. SQLite serves one instance.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/store/database.js';
import { runAlone } from '../../src/store/job-lock.js';
import { describeEachEngine } from '../helpers/engines.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeEachEngine('scheduled jobs, one runner at a time', ({ url, engine }) => {
  // Two handles on one database: two instances.
  let a: Database;
  let b: Database;
  before(async () => {
    a = await openDatabase(url());
    await a.migrate();
    b = await openDatabase(url());
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  test('two instances start the same job together: the runs never overlap', async () => {
    let inside = 0;
    let most = 0;
    const run = (db: Database) =>
      runAlone(db, 'archive', async () => {
        inside++;
        most = Math.max(most, inside);
        await sleep(150);
        inside--;
        return 'moved';
      });
    const [first, second] = await Promise.all([run(a), run(b)]);
    if (engine === 'postgres') {
      assert.equal(most, 1, 'never two runs at once');
      assert.deepEqual(
        [first.ran, second.ran].sort(),
        [false, true],
        'one ran, the other skipped its turn',
      );
    } else {
      assert.deepEqual(
        [first, second],
        [
          { ran: true, value: 'moved' },
          { ran: true, value: 'moved' },
        ],
      );
    }
    // Free again afterwards; another job was never blocked.
    assert.deepEqual(await runAlone(b, 'archive', () => Promise.resolve(1)), {
      ran: true,
      value: 1,
    });
    assert.deepEqual(await runAlone(a, 'checkpoint', () => Promise.resolve(2)), {
      ran: true,
      value: 2,
    });
  });

  test(
    'an instance that dies while holding a job frees it',
    {
      skip: engine === 'sqlite' ? 'SQLite serves one instance' : false,
    },
    async () => {
      // An instance's connection holding the job, as runAlone takes it.
      const holder = new pg.Client({ connectionString: url() });
      await holder.connect();
      await holder.query('select pg_advisory_lock(7303, 2)');
      let ran = false;
      assert.deepEqual(
        await runAlone(a, 'archive', () => {
          ran = true;
          return Promise.resolve();
        }),
        { ran: false },
      );
      assert.equal(ran, false);
      // The holder's process is gone: PostgreSQL drops its session locks with the connection.
      await holder.end();
      const deadline = Date.now() + 5000;
      let result = await runAlone(a, 'archive', () => Promise.resolve('after'));
      while (!result.ran && Date.now() < deadline) {
        await sleep(50);
        result = await runAlone(a, 'archive', () => Promise.resolve('after'));
      }
      assert.deepEqual(result, { ran: true, value: 'after' });
    },
  );
});
