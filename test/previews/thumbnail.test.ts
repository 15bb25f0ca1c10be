// Previews: real images and generated DICOM files in, JPEG thumbnails or a stated reason out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import {
  makePreview,
  THUMBNAIL_SIZE,
  THUMBNAIL_TYPE,
  type Preview,
} from '../../src/previews/thumbnail.js';
import { buildDicom, truncateDicom } from '../helpers/dicom-fixtures.js';

type Ready = Extract<Preview, { status: 'ready' }>;

function assertReady(preview: Preview): Ready {
  assert.equal(preview.status, 'ready', 'reason' in preview ? preview.reason : '');
  return preview;
}

/** Checks the thumbnail really is a JPEG of the size reported, by decoding it. */
async function assertJpeg(preview: Ready, width: number, height: number): Promise<void> {
  assert.deepEqual([...preview.thumbnail.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  const decoded = await sharp(preview.thumbnail).metadata();
  assert.equal(decoded.format, 'jpeg');
  assert.equal(decoded.width, width);
  assert.equal(decoded.height, height);
  assert.equal(preview.width, width);
  assert.equal(preview.height, height);
}

/** The RGB (or grey) value at x, y of a thumbnail. */
async function pixelAt(image: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * info.channels;
  return [...data.subarray(at, at + info.channels)];
}

function solid(width: number, height: number, background: string) {
  return sharp({ create: { width, height, channels: 3, background } });
}

describe('makePreview: images', () => {
  it('shrinks a 1000×500 PNG to a 256×128 JPEG and reports the original size', async () => {
    const png = await solid(1000, 500, '#336699').png().toBuffer();
    const preview = assertReady(await makePreview(png, 'image/png'));
    await assertJpeg(preview, 256, 128);
    assert.equal(THUMBNAIL_SIZE, 256);
    assert.equal(THUMBNAIL_TYPE, 'image/jpeg');
    assert.deepEqual(preview.metadata, { width: 1000, height: 500, format: 'png' });
  });

  it('does not enlarge a small image', async () => {
    const webp = await solid(100, 40, '#00ff00').webp().toBuffer();
    const preview = assertReady(await makePreview(webp, 'image/webp'));
    await assertJpeg(preview, 100, 40);
    assert.deepEqual(preview.metadata, { width: 100, height: 40, format: 'webp' });
  });

  it('turns a phone photo upright by its EXIF orientation and strips the EXIF', async () => {
    // Left half red, right half blue; orientation 6 means "rotate 90° clockwise to view".
    const photo = await solid(200, 100, '#0000ff')
      .composite([{ input: await solid(100, 100, '#ff0000').png().toBuffer(), left: 0, top: 0 }])
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const preview = assertReady(await makePreview(photo, 'image/jpeg'));
    await assertJpeg(preview, 100, 200);
    assert.deepEqual(preview.metadata, { width: 100, height: 200, format: 'jpeg' });

    const [topR = 0, , topB = 0] = await pixelAt(preview.thumbnail, 50, 10);
    const [bottomR = 0, , bottomB = 0] = await pixelAt(preview.thumbnail, 50, 190);
    assert.ok(topR > 200 && topB < 60, 'the left (red) half is now on top');
    assert.ok(bottomB > 200 && bottomR < 60, 'the right (blue) half is now at the bottom');

    const thumbMeta = await sharp(preview.thumbnail).metadata();
    assert.equal(thumbMeta.orientation, undefined);
    assert.equal(thumbMeta.exif, undefined);
  });

  it('puts transparent areas on white, not black', async () => {
    const logo = await sharp({
      create: { width: 50, height: 50, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    const preview = assertReady(await makePreview(logo, 'image/png'));
    const [r = 0, g = 0, b = 0] = await pixelAt(preview.thumbnail, 25, 25);
    assert.ok(r > 245 && g > 245 && b > 245, `got ${r},${g},${b}`);
  });

  it('accepts a content type with parameters and capitals, and a JPEG named as PNG', async () => {
    const jpeg = await solid(300, 300, '#888888').jpeg().toBuffer();
    const preview = assertReady(await makePreview(jpeg, 'Image/PNG; charset=binary'));
    await assertJpeg(preview, 256, 256);
    assert.equal(preview.metadata?.format, 'jpeg');
  });

  it('fails a damaged JPEG with a short reason and no metadata', async () => {
    const jpeg = await solid(400, 300, '#884422').jpeg().toBuffer();
    for (const damaged of [jpeg.subarray(0, jpeg.length / 2), Buffer.from('not an image at all')]) {
      const preview = await makePreview(damaged, 'image/jpeg');
      assert.deepEqual(preview, {
        status: 'failed',
        reason: 'The image could not be read; the file may be damaged.',
        metadata: null,
      });
    }
  });

  it('does not decode an image claiming more pixels than the limit', async () => {
    // A 1×1 PNG whose header claims 20000×20000.
    const png = Buffer.from(await solid(1, 1, '#000000').png().toBuffer());
    png.writeUInt32BE(20000, 16);
    png.writeUInt32BE(20000, 20);
    png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
    const preview = await makePreview(png, 'image/png');
    assert.equal(preview.status, 'unsupported');
    assert.match(preview.reason, /too large \(20000 × 20000 pixels\)/);
    assert.deepEqual(preview.metadata, { width: 20000, height: 20000, format: 'png' });
  });
});

describe('makePreview: other file types', () => {
  it('has no preview for a PDF', async () => {
    const pdf = Buffer.from('%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n');
    assert.deepEqual(await makePreview(pdf, 'application/pdf'), {
      status: 'unsupported',
      reason: 'No preview for this file type.',
      metadata: null,
    });
  });

  it('does not render SVG, even when it is labelled as a PNG', async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    );
    for (const type of ['image/svg+xml', 'image/png']) {
      const preview = await makePreview(svg, type);
      assert.equal(preview.status, 'unsupported', type);
      assert.equal(preview.metadata, null);
    }
  });
});

describe('makePreview: DICOM', () => {
  const PATIENT = { patientName: 'Okafor^Biscuit', patientId: 'CT-00417' };
  // 512×256, dark on the left, bright on the right.
  const columns = 512;
  const rows = 256;
  const ramp = Array.from({ length: rows * columns }, (_, i) => (i % columns) * 8);

  it('renders a greyscale image to a thumbnail, with its tags as metadata', async () => {
    const file = buildDicom({
      ...PATIENT,
      species: 'Feline',
      rows,
      columns,
      bitsAllocated: 16,
      pixels: ramp,
    });
    const preview = assertReady(await makePreview(file, 'application/dicom'));
    await assertJpeg(preview, 256, 128);
    assert.ok(preview.metadata);
    assert.equal(preview.metadata.patientName, 'Okafor Biscuit');
    assert.equal(preview.metadata.species, 'Feline');
    assert.equal(preview.metadata.rows, 256);
    assert.equal(preview.metadata.columns, 512);

    const [left = 255] = await pixelAt(preview.thumbnail, 1, 64);
    const [right = 0] = await pixelAt(preview.thumbnail, 254, 64);
    assert.ok(left < 20, `left edge is dark (${left})`);
    assert.ok(right > 235, `right edge is bright (${right})`);
  });

  it('shows MONOCHROME1 with low values white', async () => {
    const file = buildDicom({
      rows,
      columns,
      bitsAllocated: 16,
      photometric: 'MONOCHROME1',
      pixels: ramp,
    });
    const preview = assertReady(await makePreview(file, 'application/dicom'));
    const [left = 0] = await pixelAt(preview.thumbnail, 1, 64);
    assert.ok(left > 235, `left edge is bright (${left})`);
  });

  it('explains a compressed image and keeps its tags', async () => {
    const file = buildDicom({ ...PATIENT, transferSyntax: 'jpeg2000', rows: 64, columns: 64 });
    const preview = await makePreview(file, 'application/dicom');
    assert.equal(preview.status, 'unsupported');
    assert.equal(
      preview.reason,
      'No preview: the image uses a compressed transfer syntax (JPEG 2000 Lossless).',
    );
    assert.ok(preview.metadata);
    assert.equal(preview.metadata.patientId, 'CT-00417');
    assert.equal(preview.metadata.transferSyntax, 'JPEG 2000 Lossless');
  });

  it('fails a truncated or non-DICOM file without naming the patient', async () => {
    const file = buildDicom({
      ...PATIENT,
      rows: 16,
      columns: 16,
      bitsAllocated: 8,
      pixels: ramp.slice(0, 256),
    });
    const truncated = await makePreview(
      truncateDicom(file, file.length - 100),
      'application/dicom',
    );
    assert.deepEqual(truncated, {
      status: 'failed',
      reason: 'The DICOM file is truncated or corrupt.',
      metadata: null,
    });

    const png = await solid(10, 10, '#ffffff').png().toBuffer();
    const notDicom = await makePreview(png, 'application/dicom');
    assert.equal(notDicom.status, 'failed');
    assert.match(notDicom.reason, /not DICOM/);
  });
});
