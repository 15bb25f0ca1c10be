// Reads uploaded DICOM files: the tags shown beside them and an 8-bit greyscale rendering.
import { TextDecoder } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { DataSet } from 'dicom-parser';
import { AppError } from '../domain/errors.js';

export interface DicomMetadata {
  patientName: string | null;
  patientId: string | null;
  /** (0010,2201) Patient Species Description */
  species: string | null;
  /** (0010,2292) Patient Breed Description */
  breed: string | null;
  /** YYYY-MM-DD when the file holds a valid DICOM date, otherwise the text as stored. */
  studyDate: string | null;
  studyDescription: string | null;
  seriesDescription: string | null;
  modality: string | null;
  bodyPart: string | null;
  studyInstanceUid: string | null;
  sopInstanceUid: string | null;
  rows: number | null;
  columns: number | null;
  numberOfFrames: number | null;
  bitsAllocated: number | null;
  photometricInterpretation: string | null;
  transferSyntaxUid: string | null;
  /** Human name of the transfer syntax, e.g. "Explicit VR Little Endian", "JPEG 2000". */
  transferSyntax: string | null;
  windowCenter: number | null;
  windowWidth: number | null;
}

export type DicomPixels =
  | {
      kind: 'grayscale';
      width: number;
      height: number;
      data: Buffer; /* 8-bit, one byte per pixel */
    }
  | { kind: 'none'; reason: string };

/** A file that is not readable DICOM. The message never quotes the file: safe to show and log. */
export class DicomError extends AppError {
  constructor(message: string, cause?: Error) {
    super('invalid', message);
    this.name = 'DicomError';
    if (cause !== undefined) this.cause = cause;
  }
}

const IMPLICIT_LE = '1.2.840.10008.1.2';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const EXPLICIT_BE = '1.2.840.10008.1.2.2';

/** The transfer syntaxes whose pixel data is stored as plain samples, with their byte order. */
const RENDERABLE: ReadonlyMap<string, { littleEndian: boolean }> = new Map([
  [IMPLICIT_LE, { littleEndian: true }],
  [EXPLICIT_LE, { littleEndian: true }],
  [EXPLICIT_BE, { littleEndian: false }],
]);

const TRANSFER_SYNTAX_NAMES: ReadonlyMap<string, string> = new Map([
  [IMPLICIT_LE, 'Implicit VR Little Endian'],
  [EXPLICIT_LE, 'Explicit VR Little Endian'],
  [EXPLICIT_BE, 'Explicit VR Big Endian'],
  ['1.2.840.10008.1.2.1.99', 'Deflated Explicit VR Little Endian'],
  ['1.2.840.10008.1.2.4.50', 'JPEG Baseline'],
  ['1.2.840.10008.1.2.4.51', 'JPEG Extended'],
  ['1.2.840.10008.1.2.4.57', 'JPEG Lossless'],
  ['1.2.840.10008.1.2.4.70', 'JPEG Lossless (first-order prediction)'],
  ['1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless'],
  ['1.2.840.10008.1.2.4.81', 'JPEG-LS Near-Lossless'],
  ['1.2.840.10008.1.2.4.90', 'JPEG 2000 Lossless'],
  ['1.2.840.10008.1.2.4.91', 'JPEG 2000'],
  ['1.2.840.10008.1.2.4.92', 'JPEG 2000 Part 2 Multi-component Lossless'],
  ['1.2.840.10008.1.2.4.93', 'JPEG 2000 Part 2 Multi-component'],
  ['1.2.840.10008.1.2.4.100', 'MPEG-2'],
  ['1.2.840.10008.1.2.4.101', 'MPEG-2 High Level'],
  ['1.2.840.10008.1.2.4.102', 'MPEG-4 AVC/H.264'],
  ['1.2.840.10008.1.2.4.103', 'MPEG-4 AVC/H.264 BD-compatible'],
  ['1.2.840.10008.1.2.4.104', 'MPEG-4 AVC/H.264 for 2D Video'],
  ['1.2.840.10008.1.2.4.105', 'MPEG-4 AVC/H.264 for 3D Video'],
  ['1.2.840.10008.1.2.4.106', 'MPEG-4 AVC/H.264 Stereo'],
  ['1.2.840.10008.1.2.4.107', 'HEVC/H.265 Main Profile'],
  ['1.2.840.10008.1.2.4.108', 'HEVC/H.265 Main 10 Profile'],
  ['1.2.840.10008.1.2.4.201', 'High-Throughput JPEG 2000 Lossless'],
  ['1.2.840.10008.1.2.4.202', 'High-Throughput JPEG 2000 (RPCL) Lossless'],
  ['1.2.840.10008.1.2.4.203', 'High-Throughput JPEG 2000'],
  ['1.2.840.10008.1.2.5', 'RLE Lossless'],
]);

/** TextDecoder labels for the single-byte and multi-byte Specific Character Sets we can decode. */
const CHARACTER_SETS: ReadonlyMap<string, string> = new Map([
  ['ISO_IR 192', 'utf-8'],
  ['ISO_IR 100', 'latin1'],
  ['ISO_IR 101', 'iso-8859-2'],
  ['ISO_IR 109', 'iso-8859-3'],
  ['ISO_IR 110', 'iso-8859-4'],
  ['ISO_IR 144', 'iso-8859-5'],
  ['ISO_IR 127', 'iso-8859-6'],
  ['ISO_IR 126', 'iso-8859-7'],
  ['ISO_IR 138', 'iso-8859-8'],
  ['ISO_IR 148', 'iso-8859-9'],
  ['ISO_IR 203', 'iso-8859-15'],
  ['ISO_IR 166', 'windows-874'],
  ['GB18030', 'gb18030'],
  ['GBK', 'gbk'],
]);

/** A deflated data set may not expand beyond this (a few kilobytes of zlib can claim gigabytes). */
const MAX_INFLATED_BYTES = 256 * 1024 ** 2;
const TRUNCATED = 'The DICOM file is truncated or corrupt.';
/** No tag we show is longer than 64 characters; a hostile file may claim megabytes. */
const MAX_TEXT_BYTES = 1024;

const Tag = {
  transferSyntaxUid: 'x00020010',
  specificCharacterSet: 'x00080005',
  sopInstanceUid: 'x00080018',
  studyDate: 'x00080020',
  modality: 'x00080060',
  studyDescription: 'x00081030',
  seriesDescription: 'x0008103e',
  patientName: 'x00100010',
  patientId: 'x00100020',
  patientBirthDate: 'x00100030',
  responsiblePerson: 'x00102297',
  stationName: 'x00081010',
  species: 'x00102201',
  breed: 'x00102292',
  bodyPart: 'x00180015',
  studyInstanceUid: 'x0020000d',
  samplesPerPixel: 'x00280002',
  photometricInterpretation: 'x00280004',
  numberOfFrames: 'x00280008',
  rows: 'x00280010',
  columns: 'x00280011',
  bitsAllocated: 'x00280100',
  bitsStored: 'x00280101',
  highBit: 'x00280102',
  pixelRepresentation: 'x00280103',
  windowCenter: 'x00281050',
  windowWidth: 'x00281051',
  rescaleIntercept: 'x00281052',
  rescaleSlope: 'x00281053',
  pixelData: 'x7fe00010',
} as const;

/**
 * Parses a DICOM Part-10 file. Throws DicomError when the file is not DICOM or is truncated;
 * an image that cannot be rendered is not an error but `pixels.kind === 'none'` with a reason.
 */
export function inspectDicom(bytes: Uint8Array): { metadata: DicomMetadata; pixels: DicomPixels } {
  const tags = new TagReader(parse(bytes));
  const metadata = readMetadata(tags);
  return { metadata, pixels: readPixels(tags, metadata) };
}

/** Who and what an imaging file is about, as an imaging device wrote it (for device results). */
export interface DicomHeader extends Pick<
  DicomMetadata,
  | 'sopInstanceUid'
  | 'studyInstanceUid'
  | 'patientId'
  | 'species'
  | 'modality'
  | 'studyDate'
  | 'studyDescription'
  | 'seriesDescription'
  | 'bodyPart'
> {
  /** Components of Patient's Name (0010,0010): in veterinary use "OwnerSurname^AnimalName". */
  patientName: { family: string | null; given: string | null };
  /** Family name of Responsible Person (0010,2297), the owner. */
  ownerFamilyName: string | null;
  /** YYYY-MM-DD */
  birthDate: string | null;
  stationName: string | null;
}

/**
 * The header of a Part-10 file from its first bytes: everything before the pixel data. Throws
 * DicomError when the bytes are not DICOM or the header does not fit in them.
 */
export function readDicomHeader(prefix: Uint8Array): DicomHeader {
  requirePart10(prefix);
  let dataSet: DataSet;
  try {
    dataSet = dicomParser.parseDicom(prefix, { untilTag: Tag.pixelData, inflater: inflateBounded });
  } catch (error) {
    if (error instanceof DicomError) throw error;
    throw new DicomError(
      'The DICOM header could not be read (truncated, or longer than this server reads).',
      parserFailure(error),
    );
  }
  const tags = new TagReader(dataSet);
  const metadata = readMetadata(tags);
  const components = (value: string | null) =>
    (value?.split('=')[0] ?? '').split('^').map((part) => part.trim() || null);
  const [family = null, given = null] = components(tags.text(Tag.patientName));
  const [ownerFamily = null] = components(tags.text(Tag.responsiblePerson));
  return {
    sopInstanceUid: metadata.sopInstanceUid,
    studyInstanceUid: metadata.studyInstanceUid,
    patientId: metadata.patientId,
    species: metadata.species,
    modality: metadata.modality,
    studyDate: metadata.studyDate,
    studyDescription: metadata.studyDescription,
    seriesDescription: metadata.seriesDescription,
    bodyPart: metadata.bodyPart,
    patientName: { family, given },
    ownerFamilyName: ownerFamily,
    birthDate: wholeDate(tags.ascii(Tag.patientBirthDate)),
    stationName: tags.text(Tag.stationName),
  };
}

function requirePart10(bytes: Uint8Array): void {
  if (!hasPart10Prefix(bytes))
    throw new DicomError('The file is not DICOM: it has no "DICM" marker after the preamble.');
}

function parse(bytes: Uint8Array): DataSet {
  requirePart10(bytes);
  let dataSet: DataSet;
  try {
    dataSet = dicomParser.parseDicom(bytes, { inflater: inflateBounded });
  } catch (error) {
    if (error instanceof DicomError) throw error;
    // dicom-parser throws strings, Errors, or { exception, dataSet } whose dataSet holds the
    // patient's tags: keep only the structural message.
    throw new DicomError(TRUNCATED, parserFailure(error));
  }
  // Undefined-length sequences cut short are only reported as warnings.
  const hitEnd = dataSet.warnings.some((warning) => warning.startsWith('eof encountered'));
  if (hitEnd || !isComplete(dataSet, dataSet.byteArray.length)) throw new DicomError(TRUNCATED);
  return dataSet;
}

/** dicom-parser accepts an implicit-VR file whose last value runs past the end of the file. */
function isComplete(dataSet: DataSet, fileLength: number): boolean {
  for (const element of Object.values(dataSet.elements)) {
    if (element.dataOffset + element.length > fileLength) return false;
    for (const fragment of element.fragments ?? []) {
      if (fragment.position + fragment.length > fileLength) return false;
    }
    for (const item of element.items ?? []) {
      if (item.dataSet !== undefined && !isComplete(item.dataSet, fileLength)) return false;
    }
  }
  return true;
}

function hasPart10Prefix(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 &&
    bytes[128] === 0x44 &&
    bytes[129] === 0x49 &&
    bytes[130] === 0x43 &&
    bytes[131] === 0x4d
  );
}

/** dicom-parser's own inflater has no output limit and needs a Buffer. */
function inflateBounded(bytes: Uint8Array, position: number): Uint8Array {
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(bytes.subarray(position), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    const tooLarge =
      error instanceof RangeError && 'code' in error && error.code === 'ERR_BUFFER_TOO_LARGE';
    throw new DicomError(
      tooLarge ? 'The deflated DICOM data set expands beyond the size a preview reads.' : TRUNCATED,
      parserFailure(error),
    );
  }
  const whole = new Uint8Array(position + inflated.length);
  whole.set(bytes.subarray(0, position));
  whole.set(inflated, position);
  return whole;
}

function parserFailure(error: unknown): Error {
  if (typeof error === 'string') return new Error(error);
  if (error instanceof Error) return new Error(error.message);
  if (typeof error === 'object' && error !== null && 'exception' in error) {
    return parserFailure(error.exception);
  }
  return new Error('unknown dicom-parser failure');
}

/** Bounds-checked access to the values of a parsed data set. */
class TagReader {
  readonly transferSyntaxUid: string | null;
  private readonly littleEndian: boolean;
  private readonly decoder: TextDecoder;

  constructor(private readonly dataSet: DataSet) {
    this.transferSyntaxUid = this.ascii(Tag.transferSyntaxUid);
    this.littleEndian = this.transferSyntaxUid !== EXPLICIT_BE;
    this.decoder = textDecoder(this.ascii(Tag.specificCharacterSet));
  }

  /** The element's value bytes, or undefined when absent, empty or outside the file. */
  bytes(tag: string): Uint8Array | undefined {
    const element = this.dataSet.elements[tag];
    if (element === undefined || !(element.length > 0)) return undefined;
    const end = element.dataOffset + element.length;
    if (element.dataOffset < 0 || end > this.dataSet.byteArray.length) return undefined;
    return this.dataSet.byteArray.subarray(element.dataOffset, end);
  }

  has(tag: string): boolean {
    return this.dataSet.elements[tag] !== undefined;
  }

  isEncapsulated(tag: string): boolean {
    return this.dataSet.elements[tag]?.encapsulatedPixelData === true;
  }

  vr(tag: string): string | undefined {
    return this.dataSet.elements[tag]?.vr;
  }

  /** Text in the file's character set, trailing NULs and spaces removed; null when empty. */
  text(tag: string): string | null {
    const value = this.bytes(tag);
    if (value === undefined) return null;
    return clean(this.decoder.decode(value.subarray(0, MAX_TEXT_BYTES)));
  }

  /** Text limited to the DICOM default repertoire (UIDs, code strings). */
  ascii(tag: string): string | null {
    const value = this.bytes(tag);
    if (value === undefined) return null;
    return clean(Buffer.from(value.subarray(0, MAX_TEXT_BYTES)).toString('latin1'));
  }

  /** First value of a multi-valued DS or IS element. */
  number(tag: string): number | null {
    const first = this.ascii(tag)?.split('\\')[0]?.trim();
    if (first === undefined || first === '') return null;
    const value = Number(first);
    return Number.isFinite(value) ? value : null;
  }

  /** First value of a US element. */
  uint16(tag: string): number | null {
    const value = this.bytes(tag);
    if (value === undefined || value.length < 2) return null;
    return new DataView(value.buffer, value.byteOffset, 2).getUint16(0, this.littleEndian);
  }
}

function textDecoder(specificCharacterSet: string | null): TextDecoder {
  // Multi-valued sets ("\ISO 2022 IR 100") switch by escape codes; the first known term will do.
  const terms = (specificCharacterSet ?? '').split('\\').map((term) => term.trim());
  for (const term of terms) {
    const label = CHARACTER_SETS.get(term.replace(/^ISO 2022 IR /, 'ISO_IR '));
    if (label === undefined) continue;
    try {
      return new TextDecoder(label);
    } catch {
      break; // a Node built without full ICU lacks the rarer encodings
    }
  }
  // The default repertoire is ASCII; Latin-1 decodes it and is what non-conforming writers mean.
  return new TextDecoder('latin1');
}

function clean(value: string): string | null {
  const trimmed = value.replaceAll('\0', ' ').trim();
  return trimmed === '' ? null : trimmed;
}

/** "Smith^Rex^^^" → "Smith Rex"; only the first (alphabetic) component group is shown. */
function personName(value: string | null): string | null {
  if (value === null) return null;
  const alphabetic = value.split('=').find((group) => group.trim() !== '') ?? '';
  const name = alphabetic
    .split('^')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join(' ');
  return name === '' ? null : name;
}

/** YYYY-MM-DD only for a valid DICOM date; anything else is no date. */
function wholeDate(value: string | null): string | null {
  const date = isoDate(value);
  return date !== null && /^\d{4}-\d{2}-\d{2}$/.test(date) ? date : null;
}

function isoDate(value: string | null): string | null {
  const match = value === null ? null : /^(\d{4})(\d{2})(\d{2})$/.exec(value);
  if (match === null) return value;
  const [, year, month, day] = match;
  if (Number(month) < 1 || Number(month) > 12 || Number(day) < 1 || Number(day) > 31) return value;
  return `${year ?? ''}-${month ?? ''}-${day ?? ''}`;
}

function readMetadata(tags: TagReader): DicomMetadata {
  const transferSyntaxUid = tags.transferSyntaxUid;
  const frames = tags.number(Tag.numberOfFrames);
  return {
    patientName: personName(tags.text(Tag.patientName)),
    patientId: tags.text(Tag.patientId),
    species: tags.text(Tag.species),
    breed: tags.text(Tag.breed),
    studyDate: isoDate(tags.ascii(Tag.studyDate)),
    studyDescription: tags.text(Tag.studyDescription),
    seriesDescription: tags.text(Tag.seriesDescription),
    modality: tags.ascii(Tag.modality),
    bodyPart: tags.ascii(Tag.bodyPart),
    studyInstanceUid: tags.ascii(Tag.studyInstanceUid),
    sopInstanceUid: tags.ascii(Tag.sopInstanceUid),
    rows: tags.uint16(Tag.rows),
    columns: tags.uint16(Tag.columns),
    numberOfFrames: frames !== null && Number.isInteger(frames) && frames >= 0 ? frames : null,
    bitsAllocated: tags.uint16(Tag.bitsAllocated),
    photometricInterpretation: tags.ascii(Tag.photometricInterpretation),
    transferSyntaxUid,
    transferSyntax:
      transferSyntaxUid === null ? null : (TRANSFER_SYNTAX_NAMES.get(transferSyntaxUid) ?? null),
    windowCenter: tags.number(Tag.windowCenter),
    windowWidth: tags.number(Tag.windowWidth),
  };
}

const none = (reason: string): DicomPixels => ({ kind: 'none', reason: `No preview: ${reason}` });

function readPixels(tags: TagReader, metadata: DicomMetadata): DicomPixels {
  if (!tags.has(Tag.pixelData)) return none('the file contains no image.');

  const uid = metadata.transferSyntaxUid;
  const syntax = uid === null ? undefined : RENDERABLE.get(uid);
  if (syntax === undefined) {
    return none(
      metadata.transferSyntax === null
        ? `the image uses a transfer syntax this viewer does not know (${uid ?? 'none given'}).`
        : `the image uses a compressed transfer syntax (${metadata.transferSyntax}).`,
    );
  }

  const frames = metadata.numberOfFrames ?? 1;
  if (frames > 1) {
    return none(`the image has ${frames} frames; only single-frame images are previewed.`);
  }

  const samplesPerPixel = tags.uint16(Tag.samplesPerPixel) ?? 1;
  // Writers that omit the interpretation of a one-sample image almost always mean MONOCHROME2.
  const photometric =
    metadata.photometricInterpretation ?? (samplesPerPixel === 1 ? 'MONOCHROME2' : null);
  if (samplesPerPixel !== 1 || (photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2')) {
    return none(
      `colour images (${photometric ?? `${samplesPerPixel} samples per pixel`}) are not previewed.`,
    );
  }

  const bitsAllocated = metadata.bitsAllocated;
  if (bitsAllocated !== 8 && bitsAllocated !== 16) {
    return none(
      bitsAllocated === null
        ? 'the image does not say how many bits each pixel has.'
        : `images with ${bitsAllocated}-bit pixels are not previewed.`,
    );
  }

  const width = metadata.columns ?? 0;
  const height = metadata.rows ?? 0;
  if (width === 0 || height === 0) return none('the image size is missing.');

  const stored = tags.bytes(Tag.pixelData);
  const needed = width * height * (bitsAllocated / 8);
  if (tags.isEncapsulated(Tag.pixelData) || stored === undefined || stored.length < needed) {
    return none('the image data is incomplete.');
  }

  // 8-bit OW data in big endian is stored as byte-swapped 16-bit words (PS3.5 section 8.1.1).
  const swapBytePairs =
    bitsAllocated === 8 && !syntax.littleEndian && tags.vr(Tag.pixelData) === 'OW';
  const data = render({
    stored,
    width,
    height,
    bitsAllocated,
    littleEndian: syntax.littleEndian,
    swapBytePairs,
    sample: sampleFormat(tags, bitsAllocated),
    slope: nonZero(tags.number(Tag.rescaleSlope)) ?? 1,
    intercept: tags.number(Tag.rescaleIntercept) ?? 0,
    window: usableWindow(metadata.windowCenter, metadata.windowWidth),
    invert: photometric === 'MONOCHROME1',
  });
  return { kind: 'grayscale', width, height, data };
}

interface SampleFormat {
  bitsStored: number;
  highBit: number;
  signed: boolean;
}

/** Bits Stored and High Bit as the file gives them, when they fit inside Bits Allocated. */
function sampleFormat(tags: TagReader, bitsAllocated: number): SampleFormat {
  const signed = tags.uint16(Tag.pixelRepresentation) === 1;
  let bitsStored = tags.uint16(Tag.bitsStored) ?? bitsAllocated;
  if (bitsStored < 1 || bitsStored > bitsAllocated) bitsStored = bitsAllocated;
  let highBit = tags.uint16(Tag.highBit) ?? bitsStored - 1;
  if (highBit < bitsStored - 1 || highBit >= bitsAllocated) highBit = bitsStored - 1;
  return { bitsStored, highBit, signed };
}

function nonZero(value: number | null): number | null {
  return value === 0 ? null : value;
}

function usableWindow(
  center: number | null,
  width: number | null,
): { center: number; width: number } | null {
  return center !== null && width !== null && width >= 1 ? { center, width } : null;
}

interface RenderInput {
  stored: Uint8Array;
  width: number;
  height: number;
  bitsAllocated: 8 | 16;
  littleEndian: boolean;
  swapBytePairs: boolean;
  sample: SampleFormat;
  slope: number;
  intercept: number;
  window: { center: number; width: number } | null;
  invert: boolean;
}

/**
 * Stored sample → Modality LUT (rescale) → VOI LUT (window, or the image's own range) → 8 bits.
 * Every stored code maps to one output byte, so the work is done once per code in a lookup table.
 */
function render(input: RenderInput): Buffer {
  const count = input.width * input.height;
  const codes = new Uint16Array(count);
  if (input.bitsAllocated === 8) {
    for (let i = 0; i < count; i++) {
      codes[i] = input.stored[input.swapBytePairs ? i ^ 1 : i] ?? 0;
    }
  } else {
    const view = new DataView(input.stored.buffer, input.stored.byteOffset, count * 2);
    for (let i = 0; i < count; i++) codes[i] = view.getUint16(i * 2, input.littleEndian);
  }

  const { bitsStored, highBit, signed } = input.sample;
  const shift = highBit + 1 - bitsStored;
  const mask = 2 ** bitsStored - 1;
  const modality = new Float64Array(2 ** input.bitsAllocated);
  for (let code = 0; code < modality.length; code++) {
    let value = (code >>> shift) & mask;
    if (signed && value >= 2 ** (bitsStored - 1)) value -= 2 ** bitsStored;
    modality[code] = value * input.slope + input.intercept;
  }

  const voi = input.window ?? rangeOf(codes, modality);
  const lut = new Uint8Array(modality.length);
  for (let code = 0; code < lut.length; code++) {
    const y = Math.round(
      'center' in voi
        ? linearWindow(modality[code] ?? 0, voi.center, voi.width)
        : stretch(modality[code] ?? 0, voi.min, voi.max),
    );
    lut[code] = input.invert ? 255 - y : y;
  }

  const out = Buffer.allocUnsafe(count);
  for (let i = 0; i < count; i++) out[i] = lut[codes[i] ?? 0] ?? 0;
  return out;
}

function rangeOf(codes: Uint16Array, modality: Float64Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const code of codes) {
    const value = modality[code] ?? 0;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return { min, max };
}

/** DICOM PS3.3 C.11.2.1.2.1, the LINEAR VOI function, to the range 0..255. */
function linearWindow(x: number, center: number, width: number): number {
  if (x <= center - 0.5 - (width - 1) / 2) return 0;
  if (x > center - 0.5 + (width - 1) / 2) return 255;
  return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255;
}

function stretch(x: number, min: number, max: number): number {
  return max > min ? ((x - min) / (max - min)) * 255 : 0;
}
