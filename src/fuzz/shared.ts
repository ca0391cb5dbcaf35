/** Small pieces the three targets share. */
import { MAX_CHUNK_SIZE, MAX_PROTOCOL_VERSION, MAGIC } from '../protocol/index.js';
import type { FuzzInput, Verdict } from './engine.js';
import type { Rng } from './random.js';

/** The bytes as the parser gets them: a view `offset` bytes into a larger buffer of junk, when asked. */
export function present(input: FuzzInput): Buffer {
  if (input.offset === undefined) return input.bytes;
  const host = Buffer.alloc(input.offset + input.bytes.length + 8, 0xa5);
  input.bytes.copy(host, input.offset);
  return host.subarray(input.offset, input.offset + input.bytes.length);
}

/** An odd offset for one input in ten: code that reads `buf.buffer` directly, or assumes alignment, shows up. */
export function maybeOffset(rng: Rng): number | undefined {
  return rng.chance(0.1) ? rng.range(1, 7) : undefined;
}

/** DATA limits a receiver might set, including the edges around the protocol's maximum. */
const MAX_DATA_VALUES = [0, 1, 511, 512, 1024, 4096, 65536, MAX_CHUNK_SIZE - 1, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, 2 ** 32];

export function maybeMaxData(rng: Rng, p: number): number | undefined {
  return rng.chance(p) ? rng.pick(MAX_DATA_VALUES) : undefined;
}

/** Random bytes of a random length, sometimes behind a valid frame magic and version (so the header checks run further). */
export function randomBytesInput(rng: Rng, magicFirst: boolean): Buffer {
  const buf = rng.bytes(rng.length(rng.chance(0.9) ? 256 : 4096));
  if (magicFirst && buf.length >= 5) {
    buf.writeUInt32BE(MAGIC, 0);
    buf[4] = MAX_PROTOCOL_VERSION;
  }
  return buf;
}

export const finding = (message: string): Verdict => ({ kind: 'finding', message });
export const accepted = (reason: string): Verdict => ({ kind: 'accepted', reason });
export const rejected = (reason: string): Verdict => ({ kind: 'rejected', reason });
