// Uploads whose client stops sending: no bytes for the stall limit ends the file stream with a
// 408, so the store removes what it had written (a temporary file, an S3 multipart upload).
import { finished, Transform, type Readable, type TransformCallback } from 'node:stream';
import { AppError } from '../../domain/errors.js';

/** The file stream as read by the store, failing when `source` sends nothing for `stallMs`. */
export function guardStall(source: Readable, stallMs: number): Readable {
  let timer: NodeJS.Timeout | null = null;
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      arm();
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      disarm();
      callback();
    },
    destroy(err, callback) {
      disarm();
      stopWatching();
      callback(err);
    },
  });
  function disarm(): void {
    if (timer) clearTimeout(timer);
    timer = null;
  }
  function arm(): void {
    disarm();
    timer = setTimeout(expire, stallMs);
    timer.unref();
  }
  function expire(): void {
    // Bytes waiting on our side (a slow store) are not the client's stall: look again later.
    if (guard.writableLength > 0 || guard.readableLength >= guard.readableHighWaterMark) {
      arm();
      return;
    }
    const seconds = Math.round(stallMs / 1000);
    const err = new AppError(
      'request_timeout',
      `The upload stalled: no data arrived for ${seconds} seconds; nothing was stored. Send it again.`,
    );
    // The source itself is left alone: for a raw body it is the request, and destroying it would
    // drop the connection before the 408 is sent (the answer closes the connection instead).
    source.unpipe(guard);
    source.pause();
    guard.destroy(err);
  }
  // An error, or a close before the end (a multipart part its reader gave up on), fails the
  // guard too: pipe() alone would leave the store waiting for an end that never comes.
  const stopWatching = finished(source, { writable: false }, (err) => {
    if (err) guard.destroy(err);
  });
  arm();
  return source.pipe(guard);
}
