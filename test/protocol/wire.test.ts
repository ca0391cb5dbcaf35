/** WireReader / WireWriter: exact big-endian bytes, bounds, limits, and the 2^53 rule for u64. */
import { describe, expect, it } from 'vitest';
import { WireReader, WireWriter } from '../../src/protocol/wire.js';
import { expectError } from '../helpers/errors.js';

const reader = (hex: string) => new WireReader(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));

describe('WireWriter', () => {
  it('writes every field type big-endian, with its length prefix', () => {
    const buf = new WireWriter()
      .u8(0xab)
      .u16(0x0102)
      .u32(0xfffffffe)
      .u64(2 ** 32 + 3)
      .u64(Number.MAX_SAFE_INTEGER)
      .bytes8(Buffer.from([9, 8, 7]), 64)
      .str16('é!', 10)
      .toBuffer();
    expect(buf.toString('hex')).toBe(['ab', '0102', 'fffffffe', '0000000100000003', '001fffffffffffff', '03090807', '0003c3a921'].join(''));
  });

  it.each([2 ** 53, -1, 1.5, Number.NaN, Infinity])('u64(%s) is a RangeError, not a rounded value', (v) => {
    expect(() => new WireWriter().u64(v)).toThrow(RangeError);
  });

  it('u8 and u16 refuse values that do not fit', () => {
    expect(() => new WireWriter().u8(256)).toThrow(RangeError);
    expect(() => new WireWriter().u16(0x10000)).toThrow(RangeError);
    expect(() => new WireWriter().u16(-1)).toThrow(RangeError);
  });

  // Were it to wrap, a refuse index of -1 would go out as 0xffffffff (WHOLE_TRANSFER).
  it('u32 refuses values that do not fit', () => {
    expect(() => new WireWriter().u32(-1)).toThrow(RangeError);
    expect(() => new WireWriter().u32(2 ** 32)).toThrow(RangeError);
  });

  it('text and bytes over their limit are a RangeError', () => {
    expect(() => new WireWriter().str16('ééé', 5)).toThrow(RangeError); // 6 UTF-8 bytes
    expect(new WireWriter().str16('éé', 4).toBuffer().toString('hex')).toBe('0004c3a9c3a9');
    expect(() => new WireWriter().bytes8(Buffer.alloc(65), 64)).toThrow(RangeError);
  });
});

describe('WireReader', () => {
  it('reads what WireWriter wrote', () => {
    const r = new WireReader(
      new WireWriter().u8(7).u16(65535).u32(0xffffffff).u64(Number.MAX_SAFE_INTEGER).bytes8(Buffer.from('ab'), 2).str16('\u{1f600}', 4).toBuffer(),
    );
    expect(r.u8('a')).toBe(7);
    expect(r.u16('b')).toBe(65535);
    expect(r.u32('c')).toBe(0xffffffff);
    expect(r.u64('d')).toBe(Number.MAX_SAFE_INTEGER);
    expect(r.bytes8('e', 2).toString()).toBe('ab');
    expect(r.str16('f', 4)).toBe('\u{1f600}');
    r.end('test');
  });

  it('u64 accepts 2^53-1 and refuses 2^53 and above', () => {
    expect(reader('001fffffffffffff').u64('x')).toBe(2 ** 53 - 1);
    expectError(() => reader('0020000000000000').u64('x'), 'E_PROTOCOL', /x is larger than 2\^53-1/);
    expectError(() => reader('ffffffffffffffff').u64('x'), 'E_PROTOCOL', /x is larger than 2\^53-1/);
  });

  it.each([
    ['u8', '', (r: WireReader) => r.u8('f')],
    ['u16', '01', (r: WireReader) => r.u16('f')],
    ['u32', '010203', (r: WireReader) => r.u32('f')],
    ['u64', '01020304050607', (r: WireReader) => r.u64('f')],
    ['bytes8 length', '', (r: WireReader) => r.bytes8('f', 10)],
    ['bytes8 bytes', '03 0102', (r: WireReader) => r.bytes8('f', 10)],
    ['str16 length', '00', (r: WireReader) => r.str16('f', 10)],
    ['str16 text', '0003 6162', (r: WireReader) => r.str16('f', 10)],
  ])('%s past the end of the body is E_PROTOCOL', (_what, hex, read) => {
    expectError(() => read(reader(hex)), 'E_PROTOCOL', /^malformed frame: f runs past the end of the body$/);
  });

  it('length prefixes over the limit are E_PROTOCOL even when the bytes are there', () => {
    expectError(() => reader('03 010203').bytes8('d', 2), 'E_PROTOCOL', /d is 3 bytes, the limit is 2/);
    expectError(() => reader('0003 616263').str16('s', 2), 'E_PROTOCOL', /s is 3 bytes, the limit is 2/);
  });

  it('invalid UTF-8 is E_PROTOCOL, never replaced with U+FFFD', () => {
    expectError(() => reader('0002 c328').str16('s', 10), 'E_PROTOCOL', /s is not valid UTF-8/);
    expect(reader('0003 efbfbd').str16('s', 10)).toBe('\ufffd'); // a real U+FFFD is fine
  });

  it('rest() is a view of the remaining bytes, not a copy', () => {
    const buf = Buffer.from('0102030405', 'hex');
    const r = new WireReader(buf);
    r.u16('a');
    const rest = r.rest();
    expect(rest.toString('hex')).toBe('030405');
    buf[2] = 0xff;
    expect(rest[0]).toBe(0xff);
    r.end('after rest');
  });

  it('end() refuses trailing bytes', () => {
    const r = reader('0102');
    r.u8('a');
    expectError(() => r.end('thing'), 'E_PROTOCOL', /^malformed frame: 1 unexpected bytes after thing$/);
  });
});
