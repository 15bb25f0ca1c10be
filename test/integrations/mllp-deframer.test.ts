// MLLP framing, whatever TCP does to the bytes: frames cut the same way however the stream is
// split into reads; what lies outside frames is skipped; over-long and cut-off frames are
// reported with their head so that they can still be answered.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeMessage,
  frameOf,
  MllpDeframer,
  type Frame,
} from '../../src/integrations/mllp-listener.js';

const MSG_A = 'MSH|^~\\&|A|B|C|D|20261123||ORU^R01|A-1|P|2.5.1\rPID|1||123\r';
const MSG_B = 'MSH|^~\\&|A|B|C|D|20261123||ORU^R01|B-2|P|2.5.1\rOBX|1|TX|N||x\u001cy\r';

const texts = (frames: Frame[]) =>
  frames.map((f) =>
    f.kind === 'message' ? f.bytes.toString('utf8') : `${f.kind}:${f.head.toString('utf8')}`,
  );

function feed(deframer: MllpDeframer, stream: Buffer, cuts: number[]): Frame[] {
  const frames: Frame[] = [];
  let from = 0;
  for (const cut of [...cuts, stream.length]) {
    frames.push(...deframer.push(stream.subarray(from, cut)));
    from = cut;
  }
  return frames;
}

test('two frames in one read come out as two messages, in order', () => {
  const stream = Buffer.concat([frameOf(MSG_A), frameOf(MSG_B)]);
  assert.deepEqual(texts(new MllpDeframer(1 << 20).push(stream)), [MSG_A, MSG_B]);
});

test('every way of splitting the stream into reads gives the same messages', () => {
  const stream = Buffer.concat([frameOf(MSG_A), Buffer.from('\r\n'), frameOf(MSG_B)]);
  // One byte per read, and every single cut point (FS and its CR in different reads included).
  const byteByByte = feed(
    new MllpDeframer(1 << 20),
    stream,
    Array.from({ length: stream.length - 1 }, (_, i) => i + 1),
  );
  assert.deepEqual(texts(byteByByte), [MSG_A, MSG_B]);
  for (let cut = 1; cut < stream.length; cut++) {
    assert.deepEqual(
      texts(feed(new MllpDeframer(1 << 20), stream, [cut])),
      [MSG_A, MSG_B],
      `cut at ${cut}`,
    );
  }
});

test('an FS inside a message that is not followed by CR is data', () => {
  const frames = new MllpDeframer(1 << 20).push(frameOf(MSG_B));
  assert.equal(frames[0]?.kind, 'message');
  assert.ok(texts(frames)[0]?.includes('x\u001cy'));
});

test('bytes outside frames are skipped and counted', () => {
  const deframer = new MllpDeframer(1 << 20);
  const frames = deframer.push(
    Buffer.concat([Buffer.from('garbage'), frameOf(MSG_A), Buffer.from('\n')]),
  );
  assert.deepEqual(texts(frames), [MSG_A]);
  assert.equal(deframer.skipped, 'garbage'.length + 1);
  assert.equal(deframer.partial, false);
});

test('a frame cut off by the start of another is reported, and the next one still read', () => {
  const cut = Buffer.concat([Buffer.from([0x0b]), Buffer.from(MSG_A.slice(0, 30)), frameOf(MSG_B)]);
  const frames = new MllpDeframer(1 << 20).push(cut);
  assert.deepEqual(texts(frames), [`truncated:${MSG_A.slice(0, 30)}`, MSG_B]);
});

test('a frame still open at the end of the stream is partial, not a message', () => {
  const deframer = new MllpDeframer(1 << 20);
  assert.deepEqual(deframer.push(frameOf(MSG_A).subarray(0, 20)), []);
  assert.equal(deframer.partial, true);
});

test('a frame over the limit is dropped but its head kept; the next frame is read normally', () => {
  const big = `${MSG_A}OBX|1|TX|NOTE||${'x'.repeat(10_000)}\r`;
  const deframer = new MllpDeframer(2048);
  const stream = Buffer.concat([frameOf(big), frameOf(MSG_B)]);
  const frames = feed(deframer, stream, [100, 3000, 9000]);
  assert.equal(frames.length, 2);
  const [first] = frames;
  assert.ok(first?.kind === 'oversize', `first frame: ${String(first?.kind)}`);
  assert.ok(first.head.toString('utf8').startsWith(MSG_A));
  assert.ok(first.head.length <= 4096);
  assert.deepEqual(texts(frames.slice(1)), [MSG_B]);
});

test('text is UTF-8 unless MSH-18 names ISO 8859-1', () => {
  const utf8 = Buffer.from('MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5.1\rPID|1||1||MÜLLER\r', 'utf8');
  assert.match(decodeMessage(utf8), /MÜLLER/);
  const latin1 = Buffer.from(
    'MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.3||||||8859/1\rPID|1||1||MÜLLER\r',
    'latin1',
  );
  assert.match(decodeMessage(latin1), /MÜLLER/);
  assert.doesNotMatch(decodeMessage(Buffer.from(latin1)), /\ufffd/);
});
