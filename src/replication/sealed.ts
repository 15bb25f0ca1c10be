// What replication writes off the machine is sealed: every object (a WAL segment, a snapshot, an
// audit anchor) is encrypted with AES-256-GCM under a fresh data key, the data key wrapped by the
// installation's master key (the same keyring as the files, so `caretrail keys rotate` covers
// it and the key never travels with the replica), and the object's name bound in as associated
// data, so a replica alone reveals no patient data and an object moved, renamed, truncated or
// altered is refused by name.
//
// Layout: "CTR1" | u16 header length | header (JSON: keyId, wrapped) | 12-byte nonce | ciphertext
// | 16-byte tag.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Keyring } from '../blobs/master-key.js';

const MAGIC = Buffer.from('CTR1', 'ascii');
const NONCE_SIZE = 12;
const TAG_SIZE = 16;

export class SealedObjectError extends Error {}

function aad(name: string, header: Buffer): Buffer {
  return Buffer.concat([MAGIC, header, Buffer.from(`\0${name}`, 'utf8')]);
}

/** Seals `plain` as the replica object `name`. */
export function sealObject(keyring: Keyring, name: string, plain: Buffer): Buffer {
  const dataKey = randomBytes(32);
  const header = Buffer.from(JSON.stringify(keyring.wrap(dataKey, `replica:${name}`)), 'utf8');
  const lengthBytes = Buffer.alloc(2);
  lengthBytes.writeUInt16BE(header.length);
  const nonce = randomBytes(NONCE_SIZE);
  const cipher = createCipheriv('aes-256-gcm', dataKey, nonce);
  cipher.setAAD(aad(name, header));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([MAGIC, lengthBytes, header, nonce, body, cipher.getAuthTag()]);
}

/** Opens the replica object `name`; throws SealedObjectError when it is not what was sealed. */
export function openObject(keyring: Keyring, name: string, sealed: Buffer): Buffer {
  const bad = (why: string) => new SealedObjectError(`replica object ${name}: ${why}`);
  if (sealed.length < MAGIC.length + 2 || !sealed.subarray(0, MAGIC.length).equals(MAGIC))
    throw bad('not a sealed Caretrail object');
  const headerLength = sealed.readUInt16BE(MAGIC.length);
  const headerStart = MAGIC.length + 2;
  const bodyStart = headerStart + headerLength + NONCE_SIZE;
  if (sealed.length < bodyStart + TAG_SIZE) throw bad('cut short');
  const header = sealed.subarray(headerStart, headerStart + headerLength);
  let wrapped: { keyId: string; wrapped: string };
  try {
    wrapped = JSON.parse(header.toString('utf8')) as { keyId: string; wrapped: string };
  } catch {
    throw bad('its header is damaged');
  }
  if (typeof wrapped.keyId !== 'string' || typeof wrapped.wrapped !== 'string')
    throw bad('its header is damaged');
  if (!keyring.ids.includes(wrapped.keyId))
    throw bad(`sealed by master key ${wrapped.keyId}, which this installation does not have`);
  let dataKey: Buffer;
  try {
    dataKey = keyring.unwrap(wrapped, `replica:${name}`);
  } catch {
    throw bad('its key does not open (altered, or sealed under another name)');
  }
  const nonce = sealed.subarray(headerStart + headerLength, bodyStart);
  const decipher = createDecipheriv('aes-256-gcm', dataKey, nonce);
  decipher.setAAD(aad(name, header));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  try {
    return Buffer.concat([
      decipher.update(sealed.subarray(bodyStart, sealed.length - TAG_SIZE)),
      decipher.final(),
    ]);
  } catch {
    throw bad('it was altered or damaged');
  }
}
