// Documents and images: streamed, encrypted uploads; versions; soft delete and restore; retention
// purge; ranged downloads checked against their SHA-256; thumbnails made by a job. The use cases
// are plain functions in ./documents/; this binds them to the application's dependencies.
import type { RequestContext } from './context.js';
import type { ServiceDeps } from './deps.js';
import {
  changeDocumentStatus,
  purgeDocument,
  updateDocumentInfo,
} from './documents/change.service.js';
import { dropBlob, fileForResult, storeAttachment, storeFile } from './documents/files.js';
import { makeVersionPreview } from './documents/preview.service.js';
import {
  getDocument,
  listPatientDocuments,
  listVersions,
  openContent,
  readThumbnail,
} from './documents/read.service.js';
import { createDocument, replaceContent } from './documents/upload.service.js';

export type {
  Document,
  DocumentPreview,
  DocumentStorage,
  DocumentVersion,
  Download,
  IncomingFile,
  UploadFields,
} from './documents/model.js';

/** `fn` with the dependencies bound. */
function bind<A extends unknown[], R>(
  deps: ServiceDeps,
  fn: (deps: ServiceDeps, ...rest: A) => R,
): (...rest: A) => R {
  return (...rest) => fn(deps, ...rest);
}

export function createDocumentService(deps: ServiceDeps) {
  return {
    create: bind(deps, createDocument),
    replaceContent: bind(deps, replaceContent),
    get: bind(deps, getDocument),
    list: bind(deps, listPatientDocuments),
    versions: bind(deps, listVersions),
    openContent: bind(deps, openContent),
    thumbnail: bind(deps, readThumbnail),
    updateInfo: bind(deps, updateDocumentInfo),
    remove: (ctx: RequestContext, id: string) =>
      changeDocumentStatus(deps, ctx, id, 'document.delete'),
    restore: (ctx: RequestContext, id: string) =>
      changeDocumentStatus(deps, ctx, id, 'document.restore'),
    purge: bind(deps, purgeDocument),
    makeVersionPreview: bind(deps, makeVersionPreview),
    storeFile: bind(deps, storeFile),
    storeAttachment: bind(deps, storeAttachment),
    fileForResult: bind(deps, fileForResult),
    dropBlob: bind(deps, dropBlob),
  };
}

export type DocumentService = ReturnType<typeof createDocumentService>;
