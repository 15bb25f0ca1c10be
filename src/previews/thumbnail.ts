// Turns an uploaded photo or DICOM image into a small JPEG thumbnail plus metadata to show with it.
import sharp from 'sharp';
import type { FormatEnum, Metadata, OutputInfo } from 'sharp';
import { DicomError, inspectDicom } from './dicom.js';

export const THUMBNAIL_SIZE = 256;
export const THUMBNAIL_TYPE = 'image/jpeg';

export type Preview =
  | {
      status: 'ready';
      thumbnail: Buffer;
      width: number;
      height: number;
      metadata: Record<string, unknown> | null;
    }
  | { status: 'unsupported'; reason: string; metadata: Record<string, unknown> | null }
  | { status: 'failed'; reason: string; metadata: null };

/** Images with more pixels are not decoded: a few kilobytes of PNG can claim gigapixels. */
const MAX_INPUT_PIXELS = 100_000_000;
const JPEG_QUALITY = 80;

/** Declared content type → the sharp decoder expected for it. */
const IMAGE_TYPES: ReadonlyMap<string, keyof FormatEnum> = new Map([
  ['image/jpeg', 'jpeg'],
  ['image/jpg', 'jpeg'],
  ['image/pjpeg', 'jpeg'],
  ['image/png', 'png'],
  ['image/webp', 'webp'],
  ['image/gif', 'gif'],
  ['image/tiff', 'tiff'],
  ['image/avif', 'heif'],
  ['image/heif', 'heif'],
  ['image/heic', 'heif'],
  ['image/bmp', 'magick'],
]);

/**
 * Decoders accepted whatever the declared type (a JPEG named .png is common). Anything else,
 * SVG in particular, is not decoded even when sharp could.
 */
const RASTER_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

const UNKNOWN_TYPE = 'No preview for this file type.';

const mediaType = (contentType: string): string =>
  contentType.split(';')[0]?.trim().toLowerCase() ?? '';

/** The sharp decoder for an image type this build can decode, or undefined. */
function imageFormat(type: string): keyof FormatEnum | undefined {
  const format = IMAGE_TYPES.get(type);
  return format !== undefined && sharp.format[format].input.buffer ? format : undefined;
}

/**
 * Whether makePreview can do anything with a file of this (sniffed) type: the preview job skips
 * reading and decrypting the others (a 100 MB PDF or video was read whole for nothing).
 */
export function canPreview(contentType: string): boolean {
  const type = mediaType(contentType);
  return type === 'application/dicom' || imageFormat(type) !== undefined;
}

/** What makePreview answers for a type canPreview refuses. */
export const UNSUPPORTED_TYPE: Extract<Preview, { status: 'unsupported' }> = {
  status: 'unsupported',
  reason: UNKNOWN_TYPE,
  metadata: null,
};

/** Never throws: a file that cannot be read gives status 'failed' with a reason safe to show. */
export async function makePreview(bytes: Buffer, contentType: string): Promise<Preview> {
  const type = mediaType(contentType);
  if (type === 'application/dicom') return previewDicom(bytes);
  const format = imageFormat(type);
  if (format === undefined) return UNSUPPORTED_TYPE;
  return previewImage(bytes, format);
}

async function previewImage(bytes: Buffer, expected: keyof FormatEnum): Promise<Preview> {
  let header: Metadata;
  try {
    // The header alone: the pixel limit is checked below so that it gets its own reason.
    header = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch {
    return failed('The image could not be read; the file may be damaged.');
  }
  if (header.format !== expected && !RASTER_FORMATS.has(header.format)) {
    return { status: 'unsupported', reason: UNKNOWN_TYPE, metadata: null };
  }

  const { width, height } = header.autoOrient;
  const metadata = {
    width,
    height,
    format: header.format === 'heif' && header.compression === 'av1' ? 'avif' : header.format,
  };
  // Prebuilt sharp has no HEVC decoder (patents); iPhone HEIC photos are HEVC.
  if (header.format === 'heif' && header.compression === 'hevc') {
    return {
      status: 'unsupported',
      reason: 'No preview: HEIC photos (HEVC) cannot be decoded here.',
      metadata,
    };
  }
  if (width * height > MAX_INPUT_PIXELS) {
    return { status: 'unsupported', reason: tooLarge(width, height), metadata };
  }

  try {
    const out = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, autoOrient: true })
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
      // JPEG has no alpha; transparent areas would otherwise turn black.
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: JPEG_QUALITY })
      .toBuffer({ resolveWithObject: true });
    return ready(out, metadata);
  } catch {
    return failed('The image could not be read; the file may be damaged.');
  }
}

async function previewDicom(bytes: Buffer): Promise<Preview> {
  let inspected: ReturnType<typeof inspectDicom>;
  try {
    inspected = inspectDicom(bytes);
  } catch (error) {
    // DicomError messages never quote the file; anything else might, so it is not passed on.
    return failed(
      error instanceof DicomError ? error.message : 'The DICOM file could not be read.',
    );
  }
  const metadata: Record<string, unknown> = { ...inspected.metadata };
  const pixels = inspected.pixels;
  if (pixels.kind === 'none') return { status: 'unsupported', reason: pixels.reason, metadata };
  if (pixels.width * pixels.height > MAX_INPUT_PIXELS) {
    return { status: 'unsupported', reason: tooLarge(pixels.width, pixels.height), metadata };
  }
  try {
    const out = await sharp(pixels.data, {
      raw: { width: pixels.width, height: pixels.height, channels: 1 },
      limitInputPixels: MAX_INPUT_PIXELS,
    })
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
      .jpeg({ quality: JPEG_QUALITY })
      .toBuffer({ resolveWithObject: true });
    return ready(out, metadata);
  } catch {
    return failed('The DICOM image could not be rendered.');
  }
}

function ready(
  out: { data: Buffer; info: OutputInfo },
  metadata: Record<string, unknown>,
): Preview {
  return {
    status: 'ready',
    thumbnail: out.data,
    width: out.info.width,
    height: out.info.height,
    metadata,
  };
}

function failed(reason: string): Preview {
  return { status: 'failed', reason, metadata: null };
}

function tooLarge(width: number, height: number): string {
  return `No preview: the image is too large (${width} × ${height} pixels).`;
}
