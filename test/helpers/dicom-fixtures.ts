// Writes small DICOM Part-10 files in memory, so preview tests need no binary fixtures.
import { deflateRawSync } from 'node:zlib';

export type FixtureSyntax = 'explicit-le' | 'implicit-le' | 'explicit-be' | 'deflated' | 'jpeg2000';

export const TRANSFER_SYNTAX_UIDS: Record<FixtureSyntax, string> = {
  'implicit-le': '1.2.840.10008.1.2',
  'explicit-le': '1.2.840.10008.1.2.1',
  'explicit-be': '1.2.840.10008.1.2.2',
  deflated: '1.2.840.10008.1.2.1.99',
  jpeg2000: '1.2.840.10008.1.2.4.90',
};

export interface DicomFixture {
  /** Default explicit-le. jpeg2000 writes encapsulated pixel data with one dummy fragment. */
  transferSyntax?: FixtureSyntax;
  /** (0008,0005), e.g. 'ISO_IR 192'; text is written as UTF-8 for it and as Latin-1 otherwise. */
  specificCharacterSet?: string;
  patientName?: string;
  patientId?: string;
  /** (0010,0030) DA, e.g. '20150612' */
  birthDate?: string;
  species?: string;
  breed?: string;
  /** (0010,2297) PN, the owner: 'Whitaker^Jane' */
  responsiblePerson?: string;
  studyDate?: string;
  studyDescription?: string;
  seriesDescription?: string;
  modality?: string;
  bodyPart?: string;
  studyInstanceUid?: string;
  sopInstanceUid?: string;
  rows?: number;
  columns?: number;
  bitsAllocated?: number;
  /** Default bitsAllocated. */
  bitsStored?: number;
  /** Default bitsStored - 1. */
  highBit?: number;
  pixelRepresentation?: 0 | 1;
  samplesPerPixel?: number;
  photometric?: string;
  numberOfFrames?: number;
  /** Numbers, or a DS string such as '40\\400' for several values. */
  windowCenter?: number | string;
  windowWidth?: number | string;
  rescaleSlope?: number;
  rescaleIntercept?: number;
  /** Stored sample values row by row (raw bit patterns allowed); omit for a file with no image. */
  pixels?: readonly number[];
  /** VR of 8-bit pixel data in explicit syntaxes; OW is byte-swapped in big endian. Default OB. */
  pixelVr?: 'OB' | 'OW';
  /** Declared Pixel Data length in place of the real one, for hostile files. */
  pixelDataLength?: number;
}

const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const IMPLEMENTATION_CLASS = '1.2.826.0.1.3680043.10.1.99';
/** Explicit VRs with a reserved 2 bytes and a 4-byte length. */
const LONG_VRS = new Set([
  'OB',
  'OD',
  'OF',
  'OL',
  'OV',
  'OW',
  'SQ',
  'SV',
  'UC',
  'UN',
  'UR',
  'UT',
  'UV',
]);
const UNDEFINED_LENGTH = 0xffffffff;

interface Element {
  group: number;
  element: number;
  vr: string;
  value: Buffer;
  /** Written in place of value.length (undefined length, hostile lengths). */
  declaredLength?: number;
}

interface Encoding {
  explicit: boolean;
  littleEndian: boolean;
  utf8: boolean;
}

/** A Part-10 file: preamble, "DICM", explicit little-endian meta group, then the data set. */
export function buildDicom(fixture: DicomFixture = {}): Buffer {
  const syntax = fixture.transferSyntax ?? 'explicit-le';
  const encoding: Encoding = {
    explicit: syntax !== 'implicit-le',
    littleEndian: syntax !== 'explicit-be',
    utf8: fixture.specificCharacterSet?.includes('ISO_IR 192') ?? false,
  };
  const sopInstanceUid = fixture.sopInstanceUid ?? '1.2.826.0.1.3680043.10.1.1.1';
  const metaEncoding: Encoding = { explicit: true, littleEndian: true, utf8: false };

  const meta = Buffer.concat(
    [
      { group: 2, element: 0x0001, vr: 'OB', value: Buffer.from([0, 1]) },
      text(2, 0x0002, 'UI', SECONDARY_CAPTURE, metaEncoding),
      text(2, 0x0003, 'UI', sopInstanceUid, metaEncoding),
      text(2, 0x0010, 'UI', TRANSFER_SYNTAX_UIDS[syntax], metaEncoding),
      text(2, 0x0012, 'UI', IMPLEMENTATION_CLASS, metaEncoding),
    ].map((e) => encodeElement(e, metaEncoding)),
  );
  const groupLength = encodeElement(
    { group: 2, element: 0x0000, vr: 'UL', value: uint32(meta.length, true) },
    metaEncoding,
  );

  const dataSet = Buffer.concat(
    dataSetElements(fixture, sopInstanceUid, encoding, syntax)
      .sort((a, b) => a.group - b.group || a.element - b.element)
      .map((e) => encodeElement(e, encoding)),
  );
  return Buffer.concat([
    Buffer.alloc(128),
    Buffer.from('DICM', 'latin1'),
    groupLength,
    meta,
    syntax === 'deflated' ? deflateRawSync(dataSet) : dataSet,
  ]);
}

/** The first `keepBytes` bytes of a file, as a download cut short would leave it. */
export function truncateDicom(file: Buffer, keepBytes: number): Buffer {
  return Buffer.from(file.subarray(0, keepBytes));
}

function dataSetElements(
  fixture: DicomFixture,
  sopInstanceUid: string,
  encoding: Encoding,
  syntax: FixtureSyntax,
): Element[] {
  const elements: Element[] = [
    text(0x0008, 0x0016, 'UI', SECONDARY_CAPTURE, encoding),
    text(0x0008, 0x0018, 'UI', sopInstanceUid, encoding),
  ];
  const addText = (group: number, element: number, vr: string, value: string | undefined) => {
    if (value !== undefined) elements.push(text(group, element, vr, value, encoding));
  };
  const addUs = (group: number, element: number, value: number | undefined) => {
    if (value !== undefined) {
      elements.push({ group, element, vr: 'US', value: uint16(value, encoding.littleEndian) });
    }
  };
  const addNumber = (group: number, element: number, vr: 'DS' | 'IS', value?: number | string) => {
    addText(group, element, vr, value === undefined ? undefined : String(value));
  };

  addText(0x0008, 0x0005, 'CS', fixture.specificCharacterSet);
  addText(0x0008, 0x0020, 'DA', fixture.studyDate);
  addText(0x0008, 0x0060, 'CS', fixture.modality);
  addText(0x0008, 0x1030, 'LO', fixture.studyDescription);
  addText(0x0008, 0x103e, 'LO', fixture.seriesDescription);
  addText(0x0010, 0x0010, 'PN', fixture.patientName);
  addText(0x0010, 0x0020, 'LO', fixture.patientId);
  addText(0x0010, 0x0030, 'DA', fixture.birthDate);
  addText(0x0010, 0x2201, 'LO', fixture.species);
  addText(0x0010, 0x2292, 'LO', fixture.breed);
  addText(0x0010, 0x2297, 'PN', fixture.responsiblePerson);
  addText(0x0018, 0x0015, 'CS', fixture.bodyPart);
  addText(0x0020, 0x000d, 'UI', fixture.studyInstanceUid);

  const bitsAllocated = fixture.bitsAllocated ?? (fixture.pixels === undefined ? undefined : 8);
  const bitsStored = fixture.bitsStored ?? bitsAllocated;
  addUs(0x0028, 0x0002, fixture.samplesPerPixel ?? 1);
  addText(0x0028, 0x0004, 'CS', fixture.photometric ?? 'MONOCHROME2');
  addNumber(0x0028, 0x0008, 'IS', fixture.numberOfFrames);
  addUs(0x0028, 0x0010, fixture.rows);
  addUs(0x0028, 0x0011, fixture.columns);
  addUs(0x0028, 0x0100, bitsAllocated);
  addUs(0x0028, 0x0101, bitsStored);
  addUs(0x0028, 0x0102, fixture.highBit ?? (bitsStored === undefined ? undefined : bitsStored - 1));
  addUs(0x0028, 0x0103, fixture.pixelRepresentation ?? 0);
  addNumber(0x0028, 0x1050, 'DS', fixture.windowCenter);
  addNumber(0x0028, 0x1051, 'DS', fixture.windowWidth);
  addNumber(0x0028, 0x1052, 'DS', fixture.rescaleIntercept);
  addNumber(0x0028, 0x1053, 'DS', fixture.rescaleSlope);

  if (syntax === 'jpeg2000') {
    elements.push(encapsulatedPixelData());
  } else if (fixture.pixels !== undefined) {
    const element = pixelData(
      fixture.pixels,
      bitsAllocated ?? 8,
      fixture.pixelVr ?? 'OB',
      encoding,
    );
    if (fixture.pixelDataLength !== undefined) element.declaredLength = fixture.pixelDataLength;
    elements.push(element);
  }
  return elements;
}

function pixelData(
  samples: readonly number[],
  bitsAllocated: number,
  vr8: 'OB' | 'OW',
  encoding: Encoding,
): Element {
  if (bitsAllocated === 16) {
    const value = Buffer.alloc(samples.length * 2);
    samples.forEach((sample, i) => {
      if (encoding.littleEndian) value.writeUInt16LE(sample & 0xffff, i * 2);
      else value.writeUInt16BE(sample & 0xffff, i * 2);
    });
    return { group: 0x7fe0, element: 0x0010, vr: 'OW', value };
  }
  const value = Buffer.alloc(samples.length + (samples.length % 2));
  samples.forEach((sample, i) => {
    // 8-bit OW in big endian holds byte-swapped 16-bit words.
    const at = vr8 === 'OW' && !encoding.littleEndian ? i ^ 1 : i;
    value[at] = sample & 0xff;
  });
  return { group: 0x7fe0, element: 0x0010, vr: vr8, value };
}

/** Pixel Data of undefined length: empty offset table item, one fragment, sequence delimiter. */
function encapsulatedPixelData(): Element {
  const fragment = Buffer.concat([Buffer.from([0xff, 0x4f, 0xff, 0x51]), Buffer.alloc(60)]);
  const item = (length: number) => {
    const header = Buffer.alloc(8);
    header.writeUInt16LE(0xfffe, 0);
    header.writeUInt16LE(0xe000, 2);
    header.writeUInt32LE(length, 4);
    return header;
  };
  const delimiter = Buffer.alloc(8);
  delimiter.writeUInt16LE(0xfffe, 0);
  delimiter.writeUInt16LE(0xe0dd, 2);
  return {
    group: 0x7fe0,
    element: 0x0010,
    vr: 'OB',
    value: Buffer.concat([item(0), item(fragment.length), fragment, delimiter]),
    declaredLength: UNDEFINED_LENGTH,
  };
}

function text(
  group: number,
  element: number,
  vr: string,
  value: string,
  encoding: Encoding,
): Element {
  const bytes = Buffer.from(value, encoding.utf8 ? 'utf8' : 'latin1');
  // Values have even length: UIDs are padded with NUL, other text with a space.
  const padded =
    bytes.length % 2 === 0
      ? bytes
      : Buffer.concat([bytes, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
  return { group, element, vr, value: padded };
}

function encodeElement(e: Element, encoding: Encoding): Buffer {
  const { littleEndian } = encoding;
  const length = e.declaredLength ?? e.value.length;
  const tag = Buffer.concat([uint16(e.group, littleEndian), uint16(e.element, littleEndian)]);
  let header: Buffer;
  if (!encoding.explicit) {
    header = Buffer.concat([tag, uint32(length, littleEndian)]);
  } else if (LONG_VRS.has(e.vr)) {
    header = Buffer.concat([
      tag,
      Buffer.from(e.vr, 'latin1'),
      Buffer.alloc(2),
      uint32(length, littleEndian),
    ]);
  } else {
    header = Buffer.concat([tag, Buffer.from(e.vr, 'latin1'), uint16(length, littleEndian)]);
  }
  return Buffer.concat([header, e.value]);
}

function uint16(value: number, littleEndian: boolean): Buffer {
  const out = Buffer.alloc(2);
  if (littleEndian) out.writeUInt16LE(value);
  else out.writeUInt16BE(value);
  return out;
}

function uint32(value: number, littleEndian: boolean): Buffer {
  const out = Buffer.alloc(4);
  if (littleEndian) out.writeUInt32LE(value);
  else out.writeUInt32BE(value);
  return out;
}
