// Blob store on any S3 API (AWS S3, MinIO, Ceph, s3rver in tests), streamed with multipart
// uploads. The archive tier is a storage class; Glacier classes need a restore before reading.
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  RestoreObjectCommand,
  S3Client,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  BlobNotFoundError,
  storeUnavailable,
  type BlobStore,
  type BlobTier,
  type ByteRange,
  type Retrieval,
} from './blob-store.js';

export interface S3Location {
  bucket: string;
  prefix: string;
  region: string;
  endpoint: string | null;
  forcePathStyle: boolean;
  archiveClass: StorageClass;
}

/** Storage classes that must be restored before a read, with the usual wait (standard tier). */
const RESTORE_SECONDS: Partial<Record<string, number>> = {
  GLACIER: 5 * 3600,
  DEEP_ARCHIVE: 12 * 3600,
};

const STORAGE_CLASSES = [
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER_IR',
  'GLACIER',
  'DEEP_ARCHIVE',
];

/** `s3://bucket[/prefix]?region=&endpoint=&forcePathStyle=&archiveClass=` */
export function parseS3Url(url: string): S3Location {
  const u = new URL(url);
  if (u.protocol !== 's3:' || u.hostname === '') throw new Error('expected s3://bucket');
  const archiveClass = u.searchParams.get('archiveClass') ?? 'DEEP_ARCHIVE';
  if (!STORAGE_CLASSES.includes(archiveClass)) {
    throw new Error(`archiveClass must be one of ${STORAGE_CLASSES.join(', ')}`);
  }
  const endpoint = u.searchParams.get('endpoint');
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  return {
    bucket: u.hostname,
    prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
    region: u.searchParams.get('region') ?? 'us-east-1',
    endpoint,
    forcePathStyle:
      (u.searchParams.get('forcePathStyle') ?? (endpoint ? 'true' : 'false')) === 'true',
    archiveClass: archiveClass as StorageClass,
  };
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function isMissing(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}

/** Network failures, timeouts and 5xx answers: the store is unavailable, try again later. */
function translate(err: unknown, key?: string): Error {
  if (key !== undefined && isMissing(err)) return new BlobNotFoundError(key);
  const status = statusOf(err);
  if (status === undefined || status >= 500) return storeUnavailable();
  return err instanceof Error ? err : new Error(String(err));
}

/** A client for `location` (also the replica destination's), with timeouts that fail, not hang. */
export function s3ClientFor(
  location: S3Location,
  credentials?: { accessKeyId: string; secretAccessKey: string },
): S3Client {
  return new S3Client({
    region: location.region,
    ...(location.endpoint ? { endpoint: location.endpoint } : {}),
    forcePathStyle: location.forcePathStyle,
    ...(credentials ? { credentials } : {}),
    maxAttempts: 3,
    // Without throwOnRequestTimeout the SDK only logs a warning when requestTimeout passes, and
    // a server that accepts connections but never answers hangs every call for good.
    requestHandler: {
      connectionTimeout: 3000,
      requestTimeout: 60_000,
      throwOnRequestTimeout: true,
    },
  });
}

export function openS3BlobStore(
  location: S3Location,
  credentials?: { accessKeyId: string; secretAccessKey: string },
): BlobStore {
  const client = s3ClientFor(location, credentials);
  const Bucket = location.bucket;
  const keyOf = (key: string) => `${location.prefix}${key}`;

  async function head(key: string) {
    try {
      return await client.send(new HeadObjectCommand({ Bucket, Key: keyOf(key) }));
    } catch (err) {
      throw translate(err, key);
    }
  }

  return {
    kind: 's3',
    description: `s3://${Bucket}/${location.prefix}${location.endpoint ? ` at ${location.endpoint}` : ''}`,
    archiveDelaySeconds: RESTORE_SECONDS[location.archiveClass] ?? 0,
    async put(key, body) {
      let bytes = 0;
      body.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      // 5 MiB parts, two in flight: memory stays bounded whatever the file size.
      const upload = new Upload({
        client,
        params: {
          Bucket,
          Key: keyOf(key),
          // lib-storage guesses the length of a body from any `size`, `length`, `start`/`end` or
          // `path` property it has (EncryptStream's `size` is 0 when the upload starts), then
          // aborts a multipart upload whose part count differs from that guess. A plain stream
          // of the same bytes leaves it nothing to guess from.
          Body: Readable.from(body),
          ContentType: 'application/octet-stream',
        },
        partSize: 5 * 1024 * 1024,
        queueSize: 2,
        leavePartsOnError: false,
      });
      // A client that goes away mid-upload: stop, and let the SDK abort the multipart upload.
      const abort = () => void upload.abort().catch(() => undefined);
      body.once('error', abort);
      try {
        await upload.done();
      } catch (err) {
        if (body.errored) throw body.errored;
        throw translate(err);
      } finally {
        body.off('error', abort);
      }
      return { bytes };
    },
    async get(key, _tier: BlobTier, range?: ByteRange) {
      try {
        const res = await client.send(
          new GetObjectCommand({
            Bucket,
            Key: keyOf(key),
            ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
          }),
        );
        return res.Body as Readable;
      } catch (err) {
        throw translate(err, key);
      }
    },
    async archive(key) {
      const current = await head(key);
      if (current.StorageClass === location.archiveClass) return;
      try {
        // An in-place copy changes the storage class; the body stays encrypted as it was.
        await client.send(
          new CopyObjectCommand({
            Bucket,
            Key: keyOf(key),
            CopySource: `${Bucket}/${encodeURIComponent(keyOf(key))}`,
            StorageClass: location.archiveClass,
            MetadataDirective: 'REPLACE',
            ContentType: 'application/octet-stream',
          }),
        );
      } catch (err) {
        throw translate(err, key);
      }
    },
    async prepareRead(key, tier): Promise<Retrieval> {
      const wait = RESTORE_SECONDS[location.archiveClass];
      if (tier === 'hot' || wait === undefined) return { ready: true };
      const current = await head(key);
      if (current.StorageClass === undefined || RESTORE_SECONDS[current.StorageClass] === undefined)
        return { ready: true };
      if (current.Restore?.includes('ongoing-request="false"')) return { ready: true };
      if (!current.Restore?.includes('ongoing-request="true"')) {
        try {
          await client.send(
            new RestoreObjectCommand({
              Bucket,
              Key: keyOf(key),
              RestoreRequest: { Days: 7, GlacierJobParameters: { Tier: 'Standard' } },
            }),
          );
        } catch (err) {
          if ((err as { name?: unknown }).name !== 'RestoreAlreadyInProgress')
            throw translate(err, key);
        }
      }
      return { ready: false, retryAfterSeconds: wait };
    },
    async delete(key) {
      try {
        await client.send(new DeleteObjectCommand({ Bucket, Key: keyOf(key) }));
      } catch (err) {
        if (!isMissing(err)) throw translate(err, key);
      }
    },
    async ping() {
      try {
        await client.send(new HeadBucketCommand({ Bucket }));
      } catch (err) {
        throw translate(err);
      }
    },
    close: () => {
      client.destroy();
      return Promise.resolve();
    },
  };
}
