/** Byte literals for golden-bytes tests. */
import { refCrc32c } from './seeded.js';

/** A buffer from a hex literal; whitespace is ignored, so fields can be laid out one per group. */
export function hex(s: string): Buffer {
  const clean = s.replace(/\s+/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(clean)) throw new Error(`bad hex literal: ${s}`);
  return Buffer.from(clean, 'hex');
}

/** Appends the big-endian reference CRC32C of everything before it. */
export function withCrc(headerAndBody: Buffer): Buffer {
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32BE(refCrc32c(headerAndBody));
  return Buffer.concat([headerAndBody, trailer]);
}
