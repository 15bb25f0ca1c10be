// Opens the blob store named by CARETRAIL_BLOB_URL: `file:PATH` or `s3://bucket?...`.
import path from 'node:path';
import type { BlobStore } from './blob-store.js';
import { openFsBlobStore } from './fs-blob-store.js';
import { openS3BlobStore, parseS3Url } from './s3-blob-store.js';

export interface BlobStoreOptions {
  /** S3 credentials; when absent the AWS SDK reads them from its usual environment variables. */
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Folder store: told when a write or fsync failed with an I/O error (the disk is failing). */
  onFatalIo?: (err: Error) => void;
}

export function openBlobStore(url: string, options: BlobStoreOptions = {}): BlobStore {
  if (url.startsWith('file:'))
    return openFsBlobStore(path.resolve(url.slice('file:'.length)), options.onFatalIo);
  if (url.startsWith('s3://')) return openS3BlobStore(parseS3Url(url), options.s3Credentials);
  throw new Error('Unsupported blob URL (expected file:PATH or s3://bucket?region=…&endpoint=…)');
}
