// DICOM inspection: tags read back as written, pixels as a viewer shows them, bad files refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { DicomError, inspectDicom, type DicomPixels } from '../../src/previews/dicom.js';
import {
  buildDicom,
  truncateDicom,
  type DicomFixture,
  type FixtureSyntax,
} from '../helpers/dicom-fixtures.js';

/** DICOM PS3.3 C.11.2.1.2.1 written out again, so expectations do not come from the code under test. */
function windowed(x: number, center: number, width: number): number {
  const lower = center - 0.5 - (width - 1) / 2;
  const upper = center - 0.5 + (width - 1) / 2;
  if (x <= lower) return 0;
  if (x > upper) return 255;
  return Math.round(((x - (center - 0.5)) / (width - 1) + 0.5) * 255);
}

function grayscale(pixels: DicomPixels): { width: number; height: number; data: number[] } {
  assert.equal(pixels.kind, 'grayscale', 'reason' in pixels ? pixels.reason : '');
  return { width: pixels.width, height: pixels.height, data: [...pixels.data] };
}

function noPreview(pixels: DicomPixels): string {
  assert.equal(pixels.kind, 'none');
  return pixels.reason;
}

/** A one-row image, so pixel i is value i. */
function row(values: number[], extra: DicomFixture = {}): DicomFixture {
  return { rows: 1, columns: values.length, bitsAllocated: 16, pixels: values, ...extra };
}

const PATIENT = {
  patientName: 'Okafor^Biscuit',
  patientId: 'CT-00417',
};

describe('inspectDicom: metadata', () => {
  it('reads back every tag shown beside the preview', () => {
    const file = buildDicom({
      ...PATIENT,
      species: 'Canine',
      breed: 'Border Collie',
      studyDate: '20240305',
      // Odd lengths, so the writer pads them: text with a space, UIDs with a NUL.
      studyDescription: 'Thorax 2 views',
      seriesDescription: 'Lateral',
      modality: 'DX',
      bodyPart: 'CHEST',
      studyInstanceUid: '1.2.826.0.1.3680043.10.1.7',
      sopInstanceUid: '1.2.826.0.1.3680043.10.1.7.1',
      rows: 2,
      columns: 3,
      bitsAllocated: 16,
      bitsStored: 12,
      windowCenter: 1024.5,
      windowWidth: 300,
      pixels: [0, 1, 2, 3, 4, 5],
    });

    assert.deepEqual(inspectDicom(file).metadata, {
      patientName: 'Okafor Biscuit',
      patientId: 'CT-00417',
      species: 'Canine',
      breed: 'Border Collie',
      studyDate: '2024-03-05',
      studyDescription: 'Thorax 2 views',
      seriesDescription: 'Lateral',
      modality: 'DX',
      bodyPart: 'CHEST',
      studyInstanceUid: '1.2.826.0.1.3680043.10.1.7',
      sopInstanceUid: '1.2.826.0.1.3680043.10.1.7.1',
      rows: 2,
      columns: 3,
      numberOfFrames: null,
      bitsAllocated: 16,
      photometricInterpretation: 'MONOCHROME2',
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      transferSyntax: 'Explicit VR Little Endian',
      windowCenter: 1024.5,
      windowWidth: 300,
    });
  });

  it('reads the same tags from implicit VR and big-endian files', () => {
    for (const [transferSyntax, name] of [
      ['implicit-le', 'Implicit VR Little Endian'],
      ['explicit-be', 'Explicit VR Big Endian'],
    ] as const) {
      const { metadata } = inspectDicom(
        buildDicom({ ...PATIENT, transferSyntax, ...row([1, 2, 3], { rows: 1 }) }),
      );
      assert.equal(metadata.patientName, 'Okafor Biscuit', transferSyntax);
      assert.equal(metadata.patientId, 'CT-00417');
      assert.equal(metadata.columns, 3);
      assert.equal(metadata.rows, 1);
      assert.equal(metadata.bitsAllocated, 16);
      assert.equal(metadata.transferSyntax, name);
    }
  });

  it('decodes names in the character set the file declares', () => {
    const utf8 = inspectDicom(
      buildDicom({
        specificCharacterSet: 'ISO_IR 192',
        patientName: 'Müller^Fido^^^',
        breed: 'Bouvier des Flandres (brindlé)',
      }),
    );
    assert.equal(utf8.metadata.patientName, 'Müller Fido');
    assert.equal(utf8.metadata.breed, 'Bouvier des Flandres (brindlé)');

    // No character set: the writer uses Latin-1, which is what such files mean in practice.
    const latin1 = inspectDicom(buildDicom({ patientName: 'Jäger^Bello' }));
    assert.equal(latin1.metadata.patientName, 'Jäger Bello');
  });

  it('uses the first value of a multi-valued window', () => {
    const { metadata } = inspectDicom(
      buildDicom(row([0, 1], { windowCenter: '40\\400', windowWidth: '350\\2000' })),
    );
    assert.equal(metadata.windowCenter, 40);
    assert.equal(metadata.windowWidth, 350);
  });

  it('gives null for tags the file does not have', () => {
    const { metadata } = inspectDicom(buildDicom({}));
    assert.equal(metadata.patientName, null);
    assert.equal(metadata.species, null);
    assert.equal(metadata.studyDate, null);
    assert.equal(metadata.rows, null);
    assert.equal(metadata.windowCenter, null);
  });
});

describe('inspectDicom: rendering', () => {
  const gradient = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000];

  it('applies the window in the file to a 16-bit gradient', () => {
    const { width, height, data } = grayscale(
      inspectDicom(buildDicom(row(gradient, { windowCenter: 500, windowWidth: 401 }))).pixels,
    );
    assert.equal(width, 11);
    assert.equal(height, 1);
    assert.deepEqual(
      data,
      gradient.map((x) => windowed(x, 500, 401)),
    );
    assert.equal(data[2], 0, 'below the window is black');
    assert.equal(data[5], 128, 'the centre is mid-grey');
    assert.equal(data[8], 255, 'above the window is white');
    assert.ok((data[4] ?? 0) > 0 && (data[4] ?? 0) < 128, 'inside the window is a shade');
  });

  it('uses the first window when there are several', () => {
    const { data } = grayscale(
      inspectDicom(buildDicom(row(gradient, { windowCenter: '500\\100', windowWidth: '401\\50' })))
        .pixels,
    );
    assert.deepEqual(
      data,
      gradient.map((x) => windowed(x, 500, 401)),
    );
  });

  it('stretches the image range when the file has no window', () => {
    const values = [100, 350, 600, 850, 1100];
    const { data } = grayscale(inspectDicom(buildDicom(row(values))).pixels);
    assert.deepEqual(
      data,
      values.map((x) => Math.round(((x - 100) / 1000) * 255)),
    );
    assert.equal(data[0], 0);
    assert.equal(data[2], 128);
    assert.equal(data[4], 255);
  });

  it('inverts MONOCHROME1, where low values are white', () => {
    const { data } = grayscale(
      inspectDicom(
        buildDicom(
          row(gradient, { photometric: 'MONOCHROME1', windowCenter: 500, windowWidth: 401 }),
        ),
      ).pixels,
    );
    assert.deepEqual(
      data,
      gradient.map((x) => 255 - windowed(x, 500, 401)),
    );
    assert.equal(data[0], 255);
    assert.equal(data[10], 0);
  });

  it('applies rescale slope and intercept to signed 16-bit samples before the window', () => {
    const stored = [-2000, -1000, -10, 0, 10, 1000, 2000];
    const { data } = grayscale(
      inspectDicom(
        buildDicom(
          row(stored, {
            pixelRepresentation: 1,
            rescaleSlope: 0.5,
            rescaleIntercept: 100,
            windowCenter: 100,
            windowWidth: 1000,
          }),
        ),
      ).pixels,
    );
    assert.deepEqual(
      data,
      stored.map((s) => windowed(s * 0.5 + 100, 100, 1000)),
    );
    assert.equal(data[0], 0);
    assert.equal(data[3], 128, 'stored 0 is 100 after rescale: the window centre');
    assert.equal(data[6], 255);
    // Read as unsigned, -10 would be 65526 and far above the window.
    assert.ok((data[2] ?? 255) < 128);
  });

  it('sign-extends and masks samples narrower than 16 bits', () => {
    // 12-bit signed, with junk in the top nibble that must be ignored.
    const stored = [0xf800, 0xafff, 0x5000, 0x07ff];
    const { data } = grayscale(
      inspectDicom(buildDicom(row(stored, { bitsStored: 12, pixelRepresentation: 1 }))).pixels,
    );
    const values = [-2048, -1, 0, 2047];
    assert.deepEqual(
      data,
      values.map((x) => Math.round(((x + 2048) / 4095) * 255)),
    );
  });

  it('reads 16-bit big-endian samples in the right byte order', () => {
    const values = [1, 256, 511];
    const { data } = grayscale(
      inspectDicom(buildDicom(row(values, { transferSyntax: 'explicit-be' }))).pixels,
    );
    // Byte-swapped these would be 256, 1, 65281.
    assert.deepEqual(data, [0, 128, 255]);
  });

  it('reads 8-bit big-endian OW data, which is stored as swapped words', () => {
    const { data } = grayscale(
      inspectDicom(
        buildDicom({
          transferSyntax: 'explicit-be',
          rows: 1,
          columns: 4,
          bitsAllocated: 8,
          pixelVr: 'OW',
          pixels: [10, 20, 30, 40],
        }),
      ).pixels,
    );
    assert.deepEqual(data, [0, 85, 170, 255]);
  });

  it('renders implicit VR little-endian files, 8 and 16 bits', () => {
    const eight = grayscale(
      inspectDicom(
        buildDicom({
          transferSyntax: 'implicit-le',
          rows: 2,
          columns: 2,
          bitsAllocated: 8,
          pixels: [0, 50, 100, 200],
          windowCenter: 100,
          windowWidth: 101,
        }),
      ).pixels,
    );
    assert.deepEqual(
      eight.data,
      [0, 50, 100, 200].map((x) => windowed(x, 100, 101)),
    );
    assert.equal(eight.width, 2);
    assert.equal(eight.height, 2);

    const sixteen = grayscale(
      inspectDicom(buildDicom(row([300, 5000, 9700], { transferSyntax: 'implicit-le' }))).pixels,
    );
    assert.deepEqual(sixteen.data, [0, 128, 255]);
  });

  it('lays out rows top to bottom', () => {
    const { width, height, data } = grayscale(
      inspectDicom(
        buildDicom({ rows: 2, columns: 3, bitsAllocated: 8, pixels: [0, 0, 0, 255, 255, 255] }),
      ).pixels,
    );
    assert.equal(width, 3);
    assert.equal(height, 2);
    assert.deepEqual(data, [0, 0, 0, 255, 255, 255]);
  });
});

describe('inspectDicom: images without a preview', () => {
  it('explains a JPEG 2000 file and still reads its tags', () => {
    const { metadata, pixels } = inspectDicom(
      buildDicom({
        ...PATIENT,
        transferSyntax: 'jpeg2000',
        rows: 512,
        columns: 256,
        bitsAllocated: 16,
      }),
    );
    assert.equal(
      noPreview(pixels),
      'No preview: the image uses a compressed transfer syntax (JPEG 2000 Lossless).',
    );
    assert.equal(metadata.transferSyntaxUid, '1.2.840.10008.1.2.4.90');
    assert.equal(metadata.transferSyntax, 'JPEG 2000 Lossless');
    assert.equal(metadata.patientName, 'Okafor Biscuit');
    assert.equal(metadata.rows, 512);
    assert.equal(metadata.columns, 256);
  });

  it('reads the tags of a deflated file but does not render it', () => {
    const { metadata, pixels } = inspectDicom(
      buildDicom({ ...PATIENT, transferSyntax: 'deflated', ...row([1, 2, 3]) }),
    );
    assert.equal(metadata.patientId, 'CT-00417');
    assert.match(
      noPreview(pixels),
      /compressed transfer syntax \(Deflated Explicit VR Little Endian\)/,
    );
  });

  it('explains multi-frame, colour, unusual bit depths and missing images', () => {
    const cases: [DicomFixture, RegExp][] = [
      [row([1, 2, 3, 4, 5, 6], { numberOfFrames: 3, rows: 1, columns: 2 }), /3 frames/],
      [
        {
          rows: 1,
          columns: 1,
          bitsAllocated: 8,
          samplesPerPixel: 3,
          photometric: 'RGB',
          pixels: [1, 2, 3],
        },
        /colour images \(RGB\)/,
      ],
      [row([1, 2], { photometric: 'PALETTE COLOR' }), /colour images \(PALETTE COLOR\)/],
      [{ rows: 1, columns: 1, bitsAllocated: 32, pixels: [1, 2, 3, 4] }, /32-bit/],
      [{ ...PATIENT }, /^No preview: the file contains no image\.$/],
    ];
    for (const [fixture, reason] of cases) {
      assert.match(noPreview(inspectDicom(buildDicom(fixture)).pixels), reason);
    }
  });

  it('does not trust Rows × Columns beyond the pixel data actually present', () => {
    const started = Date.now();
    const { metadata, pixels } = inspectDicom(
      buildDicom({ rows: 65535, columns: 65535, bitsAllocated: 16, pixels: [1, 2] }),
    );
    assert.equal(noPreview(pixels), 'No preview: the image data is incomplete.');
    assert.equal(metadata.rows, 65535);
    assert.ok(Date.now() - started < 1000);
  });
});

describe('inspectDicom: files that are not readable DICOM', () => {
  const sample = buildDicom({
    ...PATIENT,
    studyDescription: 'Abdomen',
    ...row([0, 100, 200, 300, 400, 500, 600, 700]),
  });

  function assertRefused(bytes: Uint8Array, label: string): DicomError {
    let thrown: unknown;
    try {
      inspectDicom(bytes);
    } catch (error) {
      thrown = error;
    }
    assert.ok(
      thrown instanceof DicomError,
      `${label}: expected a DicomError, got ${String(thrown)}`,
    );
    for (const secret of ['Okafor', 'Biscuit', 'CT-00417', 'Abdomen']) {
      assert.ok(!thrown.message.includes(secret), `${label}: message names the patient`);
      assert.ok(!String(thrown.cause).includes(secret), `${label}: cause names the patient`);
    }
    return thrown;
  }

  it('refuses a file cut short, in every transfer syntax', () => {
    for (const transferSyntax of [
      'explicit-le',
      'implicit-le',
      'explicit-be',
      'jpeg2000',
      'deflated',
    ] satisfies FixtureSyntax[]) {
      const file = buildDicom({ ...PATIENT, transferSyntax, ...row([0, 100, 200, 300]) });
      const error = assertRefused(truncateDicom(file, file.length - 3), transferSyntax);
      assert.match(error.message, /truncated or corrupt/);
    }
  });

  it('refuses a file cut inside the patient name', () => {
    const at = sample.indexOf('Okafor') + 3;
    assertRefused(truncateDicom(sample, at), 'cut in name');
  });

  it('refuses files that are not DICOM at all', () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    assert.match(assertRefused(png, 'png').message, /not DICOM/);
    assertRefused(new Uint8Array(0), 'empty');
    assertRefused(Buffer.alloc(4096, 0x41), 'text');
    // A DICM marker followed by noise.
    assertRefused(Buffer.concat([sample.subarray(0, 132), Buffer.alloc(64, 0xff)]), 'noise');
  });

  it('refuses a pixel data length far beyond the file without allocating it', () => {
    assertRefused(
      buildDicom({ ...row([1, 2, 3, 4]), pixelDataLength: 0xfffffff0 }),
      'hostile length',
    );
  });

  it('refuses a deflated data set that expands beyond the limit', () => {
    const header = buildDicom({ transferSyntax: 'deflated' });
    const metaEnd = 132 + 12 + header.readUInt32LE(132 + 8);
    const bomb = Buffer.concat([
      header.subarray(0, metaEnd),
      deflateRawSync(Buffer.alloc(300 * 1024 ** 2)),
    ]);
    assert.ok(bomb.length < 1024 ** 2);
    assert.match(assertRefused(bomb, 'bomb').message, /expands beyond/);
  });

  it('answers damaged files with a result or a DicomError, nothing else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(sample.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.nat(sample.length),
        (flips, cut) => {
          const bytes = Buffer.from(sample);
          for (const [at, value] of flips) bytes[at] = value;
          try {
            const { pixels } = inspectDicom(bytes.subarray(0, Math.max(cut, 132)));
            if (pixels.kind === 'grayscale') {
              assert.equal(pixels.data.length, pixels.width * pixels.height);
            }
          } catch (error) {
            if (!(error instanceof DicomError)) throw error;
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
