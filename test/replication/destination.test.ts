// Replica destinations, a folder and S3 (s3rver on 127.0.0.1): objects stored whole and durable,
// listed by prefix in name order, replaced, deleted; bad names refused; nothing half-written
// left visible in the folder; an unreachable S3 is a clear error.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ReplicaUnavailableError,
  openReplicaDestination,
  type ReplicaDestination,
} from '../../src/replication/destination.js';
import { tempDir } from '../helpers/engines.js';
import { S3_CREDENTIALS, filesUnder, startS3, type S3Server } from '../helpers/storage.js';

for (const kind of ['folder', 's3'] as const) {
  describe(`replica destination [${kind}]`, () => {
    let destination: ReplicaDestination;
    let s3: S3Server | null = null;
    let dir = '';
    before(async () => {
      if (kind === 's3') {
        s3 = await startS3('caretrail-replica');
        const url = `s3://${s3.bucket}/clinic-a/replica?region=us-east-1&endpoint=http://127.0.0.1:${String(s3.port)}&forcePathStyle=true`;
        destination = openReplicaDestination(url, { s3Credentials: S3_CREDENTIALS });
      } else {
        dir = tempDir('caretrail-replica-');
        destination = openReplicaDestination(`file:${dir}`);
      }
    });
    after(async () => {
      await s3?.stop().catch(() => undefined);
      for (const d of [dir, s3?.dir ?? ''])
        if (d !== '') fs.rmSync(d, { recursive: true, force: true });
    });

    test('objects are stored whole, listed by prefix in name order, replaced and deleted', async () => {
      const segment = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
      await destination.put('generations/g2/wal/00000001/0000000000000020.seg', segment);
      await destination.put('generations/g2/wal/00000001/0000000000000010.seg', Buffer.from('a'));
      await destination.put('generations/g1/snapshot.snap', Buffer.from('old'));
      await destination.put('anchors/0000000007.json', Buffer.from('{}'));
      assert.deepEqual(
        await destination.get('generations/g2/wal/00000001/0000000000000020.seg'),
        segment,
      );
      assert.deepEqual(await destination.list('generations/g2/'), [
        'generations/g2/wal/00000001/0000000000000010.seg',
        'generations/g2/wal/00000001/0000000000000020.seg',
      ]);
      assert.deepEqual(await destination.list(''), [
        'anchors/0000000007.json',
        'generations/g1/snapshot.snap',
        'generations/g2/wal/00000001/0000000000000010.seg',
        'generations/g2/wal/00000001/0000000000000020.seg',
      ]);
      await destination.put('anchors/0000000007.json', Buffer.from('{"v":2}'));
      assert.equal((await destination.get('anchors/0000000007.json'))?.toString(), '{"v":2}');
      await destination.delete('generations/g1/snapshot.snap');
      await destination.delete('generations/g1/snapshot.snap');
      assert.equal(await destination.get('generations/g1/snapshot.snap'), null);
      assert.equal(await destination.get('never/written'), null);
      assert.deepEqual(await destination.list('generations/g1/'), []);
      if (kind === 'folder') {
        const stray = filesUnder(dir).filter((f) => f.includes(`${path.sep}.tmp${path.sep}`));
        assert.deepEqual(stray, [], 'no temporary file left behind');
      } else {
        // Under the configured prefix only.
        const keys = filesUnder(s3?.dir ?? '').map((f) => f.replaceAll(path.sep, '/'));
        assert.ok(
          keys.some((k) => k.includes('clinic-a/replica/anchors')),
          keys.join('\n'),
        );
      }
    });

    test('names that could leave the destination are refused', async () => {
      for (const name of ['../escape', 'a/../../b', '/absolute', 'a//b', '', '.hidden', 'a b']) {
        await assert.rejects(destination.put(name, Buffer.from('x')), /not a replica object name/);
      }
      await assert.rejects(destination.list('../'), /not a replica object name/);
    });

    if (kind === 's3')
      test('an unreachable bucket is a clear error, and the replica works again when it is back', async () => {
        assert.ok(s3);
        await s3.stop();
        await assert.rejects(
          destination.put('anchors/0000000008.json', Buffer.from('{}')),
          (err) => {
            assert.ok(err instanceof ReplicaUnavailableError);
            assert.match(err.message, /is unreachable/);
            return true;
          },
        );
        await s3.restart();
        await destination.put('anchors/0000000008.json', Buffer.from('{}'));
        assert.ok((await destination.list('anchors/')).includes('anchors/0000000008.json'));
      });
  });
}

test('an unknown replica URL is refused with the forms it takes', () => {
  assert.throws(
    () => openReplicaDestination('ftp://example.org/x'),
    /file:\/path\/to\/folder or s3:\/\//,
  );
});
