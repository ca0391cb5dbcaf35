/**
 * Mutations of valid inputs: bit flips, interesting bytes, truncation, junk, splicing, huge
 * lengths, shifted fields. Format knowledge (where the header, the length fields and the
 * CRC are) comes in a `WireFormat`, so the same mutators serve frames and packets.
 */
import type { Rng } from './random.js';

export interface WireFormat {
  headerSize: number;
  trailerSize: number;
  /** Offsets of length and count fields, for the type named in this buffer's header. */
  lengthFields(buf: Buffer): Array<{ at: number; width: 1 | 2 | 4 }>;
  /** Offsets of u64 fields, for the type named in this buffer's header. */
  u64Fields(buf: Buffer): number[];
  /** Byte offset of the type, and the type numbers that exist. */
  typeAt: number;
  types: readonly number[];
  /** Makes the header's length agree with the buffer's (frames only). */
  fixLength?(buf: Buffer): void;
  /** Rewrites the CRC so that the mutation reaches the field parsers. */
  fixCrc(buf: Buffer): void;
}

/** Bytes that break sign and width handling. */
const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe];

/** Values for length fields: huge, sign bits, 2^32 and 2^53 (as u64), and around the real length. */
function interestingLength(rng: Rng, buf: Buffer, width: number): bigint {
  const real = BigInt(buf.length);
  const all = [0n, 1n, 0x7fn, 0x80n, 0xffn, 0xffffn, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
  const near = [real, real - 1n, real + 1n, real - 24n, real - 28n].filter((v) => v >= 0n);
  const v = rng.pick([...all, ...near]);
  return v & ((1n << BigInt(8 * width)) - 1n);
}

/** u64 values around 2^53, where a JS number stops being exact. */
const INTERESTING_U64 = [0n, 0xffffffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 53n + 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n];

/** Writes `v` big-endian over `width` bytes at `at` (as much as fits). */
function writeUintBig(buf: Buffer, at: number, width: number, v: bigint): void {
  for (let i = width - 1; i >= 0; i--, v >>= 8n) if (at + i < buf.length) buf[at + i] = Number(v & 0xffn);
}

/** A cut point: anywhere, or at the places that matter (inside the header, at its end, inside the trailer). */
function cutPoint(rng: Rng, length: number, f: WireFormat): number {
  const points = [0, 1, f.headerSize - 1, f.headerSize, f.headerSize + 1, length - 1, length - f.trailerSize, length - f.trailerSize - 1, length - 2];
  const at = rng.chance(0.5) ? rng.below(length + 1) : rng.pick(points);
  return Math.max(0, Math.min(length, at));
}

const OPS = ['flip', 'interesting', 'random', 'truncate', 'extend', 'splice', 'length', 'u64', 'insert', 'delete', 'retype', 'duplicate'] as const;
export type MutationOp = (typeof OPS)[number];

/** Applies one mutation; returns the new buffer (never the input itself). */
export function mutateOnce(rng: Rng, input: Buffer, f: WireFormat, op: MutationOp, donor: () => Buffer): Buffer {
  const buf = Buffer.from(input);
  const n = buf.length;
  switch (op) {
    case 'flip':
      for (let k = rng.range(1, 8); k > 0 && n > 0; k--) buf[rng.below(n)]! ^= 1 << rng.below(8);
      return buf;
    case 'interesting':
      for (let k = rng.range(1, 4); k > 0 && n > 0; k--) buf[rng.below(n)] = rng.pick(INTERESTING_BYTES);
      return buf;
    case 'random':
      for (let k = rng.range(1, 4); k > 0 && n > 0; k--) buf[rng.below(n)] = rng.below(256);
      return buf;
    case 'truncate':
      return buf.subarray(0, cutPoint(rng, n, f));
    case 'extend': {
      const junk = rng.pick(['random', 'zeros', 'ones', 'self'] as const);
      const len = rng.range(1, 64);
      const tail = junk === 'random' ? rng.bytes(len) : junk === 'zeros' ? Buffer.alloc(len) : junk === 'ones' ? Buffer.alloc(len, 0xff) : buf;
      return Buffer.concat([buf, tail]);
    }
    case 'splice': {
      const other = donor();
      return Buffer.concat([buf.subarray(0, cutPoint(rng, n, f)), other.subarray(cutPoint(rng, other.length, f))]);
    }
    case 'length': {
      const fields = f.lengthFields(buf);
      const field = fields.length > 0 && rng.chance(0.8) ? rng.pick(fields) : { at: rng.below(Math.max(1, n)), width: rng.pick([1, 2, 4, 8] as const) };
      writeUintBig(buf, field.at, field.width, interestingLength(rng, buf, field.width));
      return buf;
    }
    case 'u64': {
      const fields = f.u64Fields(buf);
      const at = fields.length > 0 ? rng.pick(fields) : rng.below(Math.max(1, n));
      writeUintBig(buf, at, 8, rng.pick(INTERESTING_U64));
      return buf;
    }
    case 'insert': {
      const at = rng.below(n + 1);
      return Buffer.concat([buf.subarray(0, at), rng.bytes(rng.range(1, 8)), buf.subarray(at)]);
    }
    case 'delete': {
      const at = rng.below(n + 1);
      return Buffer.concat([buf.subarray(0, at), buf.subarray(Math.min(n, at + rng.range(1, 8)))]);
    }
    case 'retype':
      if (n > f.typeAt) buf[f.typeAt] = rng.chance(0.9) ? rng.pick(f.types) : rng.below(256);
      return buf;
    case 'duplicate': {
      // A run of bytes repeated in place: counts and lengths no longer match what follows.
      const at = rng.below(n + 1);
      const end = Math.min(n, at + rng.range(1, 32));
      return Buffer.concat([buf.subarray(0, end), buf.subarray(at, end), buf.subarray(end)]);
    }
  }
}

/**
 * One to three mutations of `input`, then, most of the time, the length and CRC made to agree
 * again, so the mutated bytes reach the field parsers instead of failing the checksum.
 */
export function mutate(rng: Rng, input: Buffer, f: WireFormat, donor: () => Buffer): { bytes: Buffer; ops: string[] } {
  let buf = input;
  const ops: string[] = [];
  for (let k = rng.range(1, 3); k > 0; k--) {
    const op = rng.pick(OPS);
    buf = mutateOnce(rng, buf, f, op, donor);
    ops.push(op);
  }
  if (f.fixLength && rng.chance(0.3)) {
    f.fixLength(buf);
    ops.push('fix-length');
  }
  if (rng.chance(0.6)) {
    f.fixCrc(buf);
    ops.push('fix-crc');
  }
  return { bytes: buf, ops };
}
