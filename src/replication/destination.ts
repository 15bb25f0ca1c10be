// Where replication puts what it ships (CARETRAIL_REPLICA_URL): a folder on another disk
// (`file:/mnt/other-disk/caretrail`) or an S3 bucket and prefix (`s3://bucket/prefix?region=…
// &endpoint=…`, the blob store's S3 settings). Objects are small and whole (a WAL segment, a
// snapshot part, an anchor), named by slash-separated paths; `put` resolves once the object is
// durable there (file and folders fsync'd; S3 acknowledged), and a half-written object is never
// visible under its name.
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { parseS3Url, s3ClientFor } from '../blobs/s3-blob-store.js';

export interface ReplicaDestination {
  /** Where, without credentials (for logs and `caretrail replicate status`). */
  readonly description: string;
  /** Stores the object and resolves once it is durable. Replaces an object of the same name. */
  put(name: string, bytes: Buffer): Promise<void>;
  /** The object, or null when there is none of that name. */
  get(name: string): Promise<Buffer | null>;
  /** Names of the objects under `prefix` (a folder-like prefix ending in "/" or ""), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Removes the object; nothing happens when it is not there. */
  delete(name: string): Promise<void>;
}

export class ReplicaUnavailableError extends Error {}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

function checkName(name: string): void {
  if (!NAME.test(name) || name.split('/').some((part) => part === '..' || part === '.'))
    throw new Error(`not a replica object name: ${JSON.stringify(name)}`);
}

function checkPrefix(prefix: string): void {
  if (prefix !== '') checkName(prefix.replace(/\/$/, ''));
}

export function openReplicaDestination(
  url: string,
  options: { s3Credentials?: { accessKeyId: string; secretAccessKey: string } } = {},
): ReplicaDestination {
  if (url.startsWith('file:')) return folderDestination(path.resolve(url.slice('file:'.length)));
  if (url.startsWith('s3://')) return s3Destination(url, options.s3Credentials);
  throw new Error(
    'CARETRAIL_REPLICA_URL must be file:/path/to/folder or s3://bucket/prefix?region=…&endpoint=…',
  );
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await fsp.open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function folderDestination(root: string): ReplicaDestination {
  const tmp = path.join(root, '.tmp');

  /** Creates the folders down to `dir`, fsyncing each parent whose entries changed. */
  async function ensureDir(dir: string): Promise<void> {
    const missing: string[] = [];
    for (let d = dir; ; d = path.dirname(d)) {
      try {
        await fsp.access(d);
        break;
      } catch {
        missing.unshift(d);
        if (path.dirname(d) === d) break;
      }
    }
    for (const d of missing) {
      await fsp.mkdir(d).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
      await fsyncPath(path.dirname(d));
    }
  }

  async function walk(dir: string, base: string, out: string[]): Promise<void> {
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const name = base === '' ? entry.name : `${base}/${entry.name}`;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), name, out);
      else if (entry.isFile()) out.push(name);
    }
  }

  return {
    description: `file:${root}`,
    async put(name, bytes) {
      checkName(name);
      const target = path.join(root, ...name.split('/'));
      await ensureDir(tmp);
      await ensureDir(path.dirname(target));
      const temporary = path.join(tmp, `${randomBytes(8).toString('hex')}.part`);
      const handle = await fsp.open(temporary, 'wx');
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } catch (err) {
        await handle.close();
        await fsp.rm(temporary, { force: true });
        throw err;
      }
      await handle.close();
      await fsp.rename(temporary, target);
      await fsyncPath(path.dirname(target));
    },
    async get(name) {
      checkName(name);
      try {
        return await fsp.readFile(path.join(root, ...name.split('/')));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async list(prefix) {
      checkPrefix(prefix);
      // Walk only the prefix's folder: on PostgreSQL the root is pgBackRest's repository too.
      const base = prefix.slice(0, Math.max(0, prefix.lastIndexOf('/')));
      const names: string[] = [];
      await walk(base === '' ? root : path.join(root, ...base.split('/')), base, names);
      return names.filter((n) => n.startsWith(prefix)).sort();
    },
    async delete(name) {
      checkName(name);
      const target = path.join(root, ...name.split('/'));
      try {
        await fsp.unlink(target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      await fsyncPath(path.dirname(target));
    },
  };
}

function s3Destination(
  url: string,
  credentials?: { accessKeyId: string; secretAccessKey: string },
): ReplicaDestination {
  const location = parseS3Url(url);
  const client = s3ClientFor(location, credentials);
  const Bucket = location.bucket;
  const keyOf = (name: string) => `${location.prefix}${name}`;
  const unavailable = (err: unknown): Error => {
    const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata
      ?.httpStatusCode;
    if (status === undefined || status >= 500)
      return new ReplicaUnavailableError(
        `the replica at s3://${Bucket}/${location.prefix} is unreachable`,
      );
    return err instanceof Error ? err : new Error(String(err));
  };
  return {
    description: `s3://${Bucket}/${location.prefix}${location.endpoint ? ` at ${location.endpoint}` : ''}`,
    async put(name, bytes) {
      checkName(name);
      try {
        await client.send(
          new PutObjectCommand({
            Bucket,
            Key: keyOf(name),
            Body: bytes,
            ContentType: 'application/octet-stream',
          }),
        );
      } catch (err) {
        throw unavailable(err);
      }
    },
    async get(name) {
      checkName(name);
      try {
        const answer = await client.send(new GetObjectCommand({ Bucket, Key: keyOf(name) }));
        if (!answer.Body) return Buffer.alloc(0);
        return Buffer.from(await answer.Body.transformToByteArray());
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return null;
        throw unavailable(err);
      }
    },
    async list(prefix) {
      checkPrefix(prefix);
      const names: string[] = [];
      let token: string | undefined;
      try {
        do {
          const page = await client.send(
            new ListObjectsV2Command({
              Bucket,
              Prefix: keyOf(prefix),
              ...(token !== undefined ? { ContinuationToken: token } : {}),
            }),
          );
          for (const object of page.Contents ?? [])
            if (object.Key !== undefined) names.push(object.Key.slice(location.prefix.length));
          token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
        } while (token !== undefined);
      } catch (err) {
        throw unavailable(err);
      }
      return names.sort();
    },
    async delete(name) {
      checkName(name);
      try {
        await client.send(new DeleteObjectCommand({ Bucket, Key: keyOf(name) }));
      } catch (err) {
        throw unavailable(err);
      }
    },
  };
}
