/**
 * CRC32C tests: published check values, agreement with a bitwise reference on odd lengths and
 * offsets, incremental use (how DATA frames are checked piece by piece), and that the fast native
 * implementation is the one in use.
 */
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cImplementation } from '../../src/protocol/index.js';
import { mulberry32, seededBytes as randomBytes, refCrc32c } from '../helpers/seeded.js';

const ascending = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

describe('crc32c: known vectors', () => {
  it.each([
    ['"123456789" (the CRC catalogue check value)', Buffer.from('123456789'), 0xe3069283],
    ['32 zero bytes (RFC 3720 B.4)', Buffer.alloc(32, 0x00), 0x8a9136aa],
    ['32 0xff bytes (RFC 3720 B.4)', Buffer.alloc(32, 0xff), 0x62a8ab43],
    ['32 ascending bytes 00..1f (RFC 3720 B.4)', ascending, 0x46dd794e],
    ['32 descending bytes 1f..00 (RFC 3720 B.4)', Buffer.from(ascending).reverse(), 0x113fdb5c],
    ['the quick brown fox', Buffer.from('The quick brown fox jumps over the lazy dog'), 0x22620404],
    ['the empty input', Buffer.alloc(0), 0],
  ])('%s', (_name, input, expected) => {
    expect(refCrc32c(input)).toBe(expected);
    expect(crc32c(input)).toBe(expected);
  });

  it('results are unsigned 32-bit numbers', () => {
    const v = crc32c(Buffer.from('123456789'));
    expect(v).toBe(3808858755); // 0xE3069283, not its negative int32 reading
    expect(Number.isInteger(v) && v >= 0 && v <= 0xffffffff).toBe(true);
  });
});

describe('crc32c: against the bitwise reference', () => {
  it('every length from 0 to 300 at every start offset 0..8', () => {
    const data = randomBytes(320, 11);
    for (let off = 0; off <= 8; off++) {
      for (let len = 0; len <= 300; len++) {
        const view = data.subarray(off, off + len);
        const got = crc32c(view);
        if (got !== refCrc32c(view)) expect({ off, len, got }).toEqual({ off, len, got: refCrc32c(view) });
      }
    }
  });

  it('1 MiB + 3 bytes of random data', () => {
    const data = randomBytes(1024 * 1024 + 3, 12);
    expect(crc32c(data)).toBe(refCrc32c(data));
  });

  it('a plain Uint8Array, and a view with a byte offset, give the CRC of just their bytes', () => {
    const data = randomBytes(100, 13);
    const u8 = new Uint8Array(data);
    expect(crc32c(u8)).toBe(refCrc32c(data));
    const view = new Uint8Array(u8.buffer, 7, 50);
    expect(crc32c(view)).toBe(refCrc32c(data.subarray(7, 57)));
  });
});

describe('crc32c: incremental', () => {
  it('crc32c(b, crc32c(a)) === crc32c(a‖b) for every split of a small input', () => {
    const data = randomBytes(200, 21);
    const whole = refCrc32c(data);
    for (let k = 0; k <= data.length; k++) {
      expect(crc32c(data.subarray(k), crc32c(data.subarray(0, k))), `split at ${k}`).toBe(whole);
    }
  });

  it('chaining over seeded random pieces (empty ones too) gives the CRC of the whole', () => {
    const data = randomBytes(300_000, 22);
    const whole = refCrc32c(data);
    for (const seed of [1, 2, 3]) {
      const rand = mulberry32(seed);
      let crc = 0;
      let at = 0;
      while (at < data.length) {
        const n = rand() < 0.1 ? 0 : 1 + Math.floor(rand() * 70_000);
        crc = crc32c(data.subarray(at, at + n), crc);
        at += n;
      }
      expect(crc, `seed ${seed}`).toBe(whole);
    }
  });

  it('an initial CRC with the top bit set is taken as unsigned', () => {
    const a = Buffer.from('1234');
    const b = Buffer.from('56789');
    const first = crc32c(a);
    expect(first).toBe(0xf63af4ee); // top bit set
    expect(crc32c(b, first)).toBe(0xe3069283);
  });
});

describe('crc32c: implementation', () => {
  it("uses the native SSE4.2 implementation on this machine (fails if sse4_crc32 is not built)", () => {
    expect(crc32cImplementation).toBe('sse4.2');
  });
});
