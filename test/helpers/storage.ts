// Runs a suite on every storage combination: each database engine with each blob store (a
// local folder, and the S3 API served by s3rver on 127.0.0.1). s3rver is a dev dependency, so
// the S3 path runs wherever the tests run.
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe } from 'node:test';
import S3rver from 's3rver';
import type { BlobStoreOptions } from '../../src/blobs/index.js';
import {
  createTestDatabase,
  PG_ADMIN_URL,
  pgUnavailable,
  tempDir,
  type EngineName,
} from './engines.js';

export type BlobKind = 'file' | 's3';

export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Server {
  port: number;
  dir: string;
  bucket: string;
  /** Blob URL of the bucket (path-style, archive tier in STANDARD_IA: readable at once). */
  url: string;
  stop(): Promise<void>;
  /** Starts again on the same port and folder (after `stop`, to simulate an outage). */
  restart(): Promise<void>;
}

export async function startS3(bucket = 'caretrail-test'): Promise<S3Server> {
  const dir = tempDir('caretrail-s3-');
  let server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  const stop = async () => {
    server.httpServer.closeAllConnections();
    await server.close();
  };
  return {
    port,
    dir,
    bucket,
    url: `s3://${bucket}?region=us-east-1&endpoint=http://127.0.0.1:${port}&forcePathStyle=true&archiveClass=STANDARD_IA`,
    stop,
    async restart() {
      server = new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir });
      await server.run();
    },
  };
}

/** Every file under `dir` (what an attacker with the disk or bucket could read). */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : [full];
  });
}

export interface StorageContext {
  engine: EngineName;
  blob: BlobKind;
  databaseUrl: () => string;
  /** CARETRAIL_* settings for this combination (database and blob store). */
  env: () => Record<string, string>;
  runtimeOptions: () => { blobs: BlobStoreOptions };
  /** Where the stored bytes end up on disk (the blob folder, or s3rver's folder). */
  rawDir: () => string;
  s3: () => S3Server | null;
}

export function describeEachStorage(name: string, suite: (ctx: StorageContext) => void): void {
  for (const engine of ['sqlite', 'postgres'] as const) {
    for (const blob of ['file', 's3'] as const) {
      const skip =
        engine === 'postgres' && pgUnavailable() !== null
          ? `PostgreSQL not reachable at ${PG_ADMIN_URL}: ${pgUnavailable() ?? ''}`
          : false;
      describe(`${name} [${engine} + ${blob}]`, { skip }, () => {
        let database: { url: string; drop: () => Promise<void> } | undefined;
        let s3: S3Server | null = null;
        let blobDir = '';
        before(async () => {
          database = await createTestDatabase(engine);
          if (blob === 's3') s3 = await startS3();
          else blobDir = tempDir('caretrail-blobs-');
        });
        after(async () => {
          await database?.drop();
          await s3?.stop().catch(() => undefined);
          for (const dir of [blobDir, s3?.dir ?? '']) {
            if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
          }
        });
        suite({
          engine,
          blob,
          databaseUrl: () => database?.url ?? '',
          env: () => ({
            CARETRAIL_DATABASE_URL: database?.url ?? '',
            CARETRAIL_BLOB_URL: s3 ? s3.url : `file:${blobDir}`,
          }),
          runtimeOptions: () => ({ blobs: s3 ? { s3Credentials: S3_CREDENTIALS } : {} }),
          rawDir: () => (s3 ? s3.dir : blobDir),
          s3: () => s3,
        });
      });
    }
  }
}
