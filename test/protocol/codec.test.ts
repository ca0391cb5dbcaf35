/**
 * Codec tests: golden bytes derived by hand from the layout in codec.ts / frames.ts, every
 * truncated prefix, single flipped bytes, hostile lengths and field-level checks.
 *
 * Expected CRC trailers come from the bitwise reference CRC32C below, never from the
 * project's crc32c(), so a wrong CRC implementation cannot vouch for itself.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  encodeFrame,
  encodeFrameToBuffer,
  HEADER_SIZE,
  MAX_CHUNK_SIZE,
  MAX_CONTROL_BODY,
  MAX_NAME_BYTES,
  MAX_WIRE_NAME_BYTES,
  TRAILER_SIZE,
  WHOLE_TRANSFER,
  type Frame,
} from '../../src/protocol/index.js';
import { hex, withCrc } from '../helpers/bytes.js';
import { refCrc32c } from '../helpers/seeded.js';
import { expectError } from '../helpers/errors.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const SESSION = 0x0102030405060708n;
const SESSION_HEX = '0102030405060708';

/**
 * A frame built by hand: header fields as given (length defaults to the body's), body from hex,
 * trailer from the reference CRC. For malformed-but-checksummed frames.
 */
function handFrame(type: number, bodyHex: string, opts: { flags?: number; version?: number; length?: number } = {}): Buffer {
  const body = hex(bodyHex);
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32BE(0x53584652, 0);
  header.writeUInt8(opts.version ?? 1, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16BE(opts.flags ?? 0, 6);
  header.writeBigUInt64BE(SESSION, 8);
  header.writeUInt32BE(opts.length ?? body.length, 16);
  return withCrc(Buffer.concat([header, body]));
}

/** Just the 20 header bytes, for "refused before the body arrives" checks. */
function headerOnly(type: number, length: number, flags = 0): Buffer {
  return hex(`53584652 01 ${type.toString(16).padStart(2, '0')} ${flags.toString(16).padStart(4, '0')} ${SESSION_HEX} ${length.toString(16).padStart(8, '0')}`);
}

// ---------------------------------------------------------------------------------------------
// Golden frames. Each `hex` is derived by hand from the documented layout:
//   magic 53584652 | version 01 | type | flags u16 | session u64 | body length u32 | body | CRC32C

interface Golden {
  frame: Frame;
  /** Header and body; the trailer is the reference CRC32C of these bytes. */
  hex: string;
}

const GOLDEN: Record<Frame['type'], Golden> = {
  hello: {
    frame: { type: 'hello', minVersion: 1, maxVersion: 1, capabilities: 0x0a0b0c0d, software: 'sx/1' },
    hex: [
      '53584652 01 01 0000', // magic, version 1, type 1 hello, flags 0
      SESSION_HEX,
      '0000000c', // body: 12 bytes
      '01 01', // min version, max version
      '0a0b0c0d', // capabilities u32
      '0004 73782f31', // software "sx/1"
    ].join(' '),
  },
  welcome: {
    frame: { type: 'welcome', version: 1, capabilities: 0, software: 'sx' },
    hex: [
      '53584652 01 02 0000',
      SESSION_HEX,
      '00000009', // 1 + 4 + 2 + 2
      '01', // version
      '00000000', // capabilities
      '0002 7378', // "sx"
    ].join(' '),
  },
  offer: {
    frame: {
      type: 'offer',
      chunkSize: 1024 * 1024,
      hash: 'sha256',
      fileCount: 2,
      totalBytes: 2 ** 32 + 5,
      more: true,
      entries: [
        { index: 0, kind: 'file', name: 'a.txt', size: 2 ** 32, mode: 0o644, mtimeMs: 1_700_000_000_000 },
        { index: 1, kind: 'file', name: 'é', size: 5, mode: 0o755, mtimeMs: 0 },
      ],
    },
    hex: [
      '53584652 01 03 0001', // flags: MORE
      SESSION_HEX,
      '00000050', // 19 + 32 + 29 = 80
      '00100000', // chunk size 1 MiB
      '02', // hash sha256
      '00000002', // file count
      '00000001 00000005', // total bytes 2^32 + 5
      '0002', // entry count
      // entry 0 (32 bytes)
      '00000000', // index
      '00', // kind file
      '00000001 00000000', // size 2^32
      '000001a4', // mode 0o644
      '0000018b cfe56800', // mtime 1_700_000_000_000 = 0x18b_cfe56800
      '0005 612e747874', // "a.txt"
      // entry 1 (29 bytes)
      '00000001',
      '00',
      '00000000 00000005',
      '000001ed', // mode 0o755
      '00000000 00000000',
      '0002 c3a9', // "é" in UTF-8
    ].join(' '),
  },
  accept: {
    frame: {
      type: 'accept',
      entries: [
        { index: 0, action: 'send', have: [[0, 2], [5, 2 ** 32]] },
        { index: 1, action: 'skip', have: [] },
      ],
    },
    hex: [
      '53584652 01 04 0000',
      SESSION_HEX,
      '00000030', // 2 + 39 + 7 = 48
      '0002', // entry count
      '00000000 00 0002', // index 0, send, 2 ranges
      '00000000 00000000  00000000 00000002', // [0, 2)
      '00000000 00000005  00000001 00000000', // [5, 2^32)
      '00000001 01 0000', // index 1, skip, no ranges
    ].join(' '),
  },
  refuse: {
    frame: { type: 'refuse', code: 601, index: WHOLE_TRANSFER, message: 'exists' },
    hex: [
      '53584652 01 05 0000',
      SESSION_HEX,
      '0000000e', // 2 + 4 + 2 + 6
      '0259', // code 601
      'ffffffff', // whole transfer
      '0006 657869737473', // "exists"
    ].join(' '),
  },
  data: {
    frame: { type: 'data', index: 3, chunk: 2 ** 32 + 1, data: [Buffer.from('hi!')] },
    hex: [
      '53584652 01 06 0000',
      SESSION_HEX,
      '0000000f', // 12 + 3
      '00000003', // file index
      '00000001 00000001', // chunk index 2^32 + 1
      '686921', // "hi!"
    ].join(' '),
  },
  end: {
    frame: { type: 'end', index: 3, hash: 'xxh128', digest: hex('000102030405060708090a0b0c0d0e0f') },
    hex: [
      '53584652 01 07 0000',
      SESSION_HEX,
      '00000016', // 4 + 1 + 1 + 16
      '00000003', // file index
      '01', // xxh128
      '10 000102030405060708090a0b0c0d0e0f', // digest, u8 length prefix
    ].join(' '),
  },
  verdict: {
    frame: { type: 'verdict', index: 3, committed: false, code: 501, hash: 'xxh128', digest: hex('ffeeddcc'), message: 'bad' },
    hex: [
      '53584652 01 08 0000',
      SESSION_HEX,
      '00000012', // 4 + 1 + 2 + 1 + 1 + 4 + 2 + 3
      '00000003', // file index
      '01', // status: not committed
      '01f5', // code 501
      '01', // xxh128
      '04 ffeeddcc', // digest
      '0003 626164', // "bad"
    ].join(' '),
  },
  error: {
    frame: { type: 'error', code: 901, message: 'v?' },
    hex: [
      '53584652 01 09 0000',
      SESSION_HEX,
      '00000006', // 2 + 2 + 2
      '0385', // code 901
      '0002 763f', // "v?"
    ].join(' '),
  },
};

const TYPES = Object.keys(GOLDEN) as Array<Frame['type']>;

function golden(type: Frame['type']): Buffer {
  return withCrc(hex(GOLDEN[type].hex));
}

function bodyLengthOf(buf: Buffer): number {
  return buf.readUInt32BE(16);
}

// ---------------------------------------------------------------------------------------------

describe('reference CRC32C used for expected trailers', () => {
  it('matches the published check values', () => {
    expect(refCrc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(refCrc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
  });
});

describe('golden bytes', () => {
  it.each(TYPES)('%s encodes to the hand-derived bytes', (type) => {
    const expected = golden(type);
    const actual = encodeFrameToBuffer(GOLDEN[type].frame, SESSION);
    expect(actual.toString('hex')).toBe(expected.toString('hex'));
    // The hand-derived body length agrees with the bytes written after the header.
    expect(bodyLengthOf(expected)).toBe(expected.length - HEADER_SIZE - TRAILER_SIZE);
  });

  it.each(TYPES)('%s decodes back to the same frame, session and size', (type) => {
    const buf = golden(type);
    expect(decodeFrame(buf)).toEqual({ frame: GOLDEN[type].frame, session: SESSION, size: buf.length });
  });

  it.each(TYPES)('%s decodes only its own bytes when more follow', (type) => {
    const buf = golden(type);
    const decoded = decodeFrame(Buffer.concat([buf, golden('hello'), hex('53')]));
    expect(decoded).toEqual({ frame: GOLDEN[type].frame, session: SESSION, size: buf.length });
  });

  it('data frames are encoded as [header+fields, ...chunk pieces, trailer], passing the pieces through without a copy', () => {
    const frame = GOLDEN.data.frame as Extract<Frame, { type: 'data' }>;
    const parts = encodeFrame(frame, SESSION);
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(frame.data[0]);
    expect(Buffer.concat(parts).toString('hex')).toBe(golden('data').toString('hex'));
  });

  it('a chunk in several pieces encodes to the same bytes as the chunk in one', () => {
    const pieces = [Buffer.from('h'), Buffer.alloc(0), Buffer.from('i!')];
    const frame: Frame = { type: 'data', index: 3, chunk: 2 ** 32 + 1, data: pieces };
    const parts = encodeFrame(frame, SESSION);
    expect(parts).toHaveLength(5);
    pieces.forEach((p, i) => expect(parts[i + 1]).toBe(p));
    expect(encodeFrameToBuffer(frame, SESSION).toString('hex')).toBe(golden('data').toString('hex'));
  });

  it('the data encoder refuses what the decoder would refuse', () => {
    const base = { type: 'data' as const, index: 0, chunk: 0, data: [Buffer.from('x')] };
    expect(() => encodeFrameToBuffer({ ...base, chunk: 1.5 }, 1n)).toThrow(RangeError);
    expect(() => encodeFrameToBuffer({ ...base, chunk: 2 ** 53 }, 1n)).toThrow(RangeError);
    expect(() => encodeFrameToBuffer({ ...base, chunk: -1 }, 1n)).toThrow(RangeError);
    expect(() => encodeFrameToBuffer({ ...base, data: [Buffer.alloc(MAX_CHUNK_SIZE), Buffer.alloc(1)] }, 1n)).toThrow(RangeError);
    expect(encodeFrameToBuffer({ ...base, chunk: Number.MAX_SAFE_INTEGER }, 1n).length).toBe(20 + 12 + 1 + 4);
  });

  it('an empty data chunk is a 12-byte body and round-trips', () => {
    const frame: Frame = { type: 'data', index: 0, chunk: 0, data: [Buffer.alloc(0)] };
    const expected = withCrc(hex(`53584652 01 06 0000 ${SESSION_HEX} 0000000c 00000000 0000000000000000`));
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(expected.toString('hex'));
    expect(decodeFrame(buf)).toEqual({ frame, session: SESSION, size: 36 });
    // No pieces at all is the same empty chunk.
    expect(encodeFrameToBuffer({ ...frame, data: [] }, SESSION).toString('hex')).toBe(expected.toString('hex'));
  });

  it('offer without MORE has flags 0; a committed verdict has status 0', () => {
    const offer: Frame = { type: 'offer', chunkSize: 512, hash: 'xxh128', fileCount: 0, totalBytes: 0, more: false, entries: [] };
    const offerBuf = encodeFrameToBuffer(offer, SESSION);
    expect(offerBuf.toString('hex')).toBe(
      withCrc(hex(`53584652 01 03 0000 ${SESSION_HEX} 00000013 00000200 01 00000000 0000000000000000 0000`)).toString('hex'),
    );
    expect(decodeFrame(offerBuf)?.frame).toEqual(offer);

    const verdict: Frame = { type: 'verdict', index: 0, committed: true, code: 0, hash: 'sha256', digest: Buffer.alloc(0), message: '' };
    const verdictBuf = encodeFrameToBuffer(verdict, SESSION);
    expect(verdictBuf.toString('hex')).toBe(
      withCrc(hex(`53584652 01 08 0000 ${SESSION_HEX} 0000000b 00000000 00 0000 02 00 0000`)).toString('hex'),
    );
    expect(decodeFrame(verdictBuf)?.frame).toEqual(verdict);
  });

  it('the session id is carried as an unsigned 64-bit value', () => {
    const max = 0xffff_ffff_ffff_ffffn;
    const buf = encodeFrameToBuffer(GOLDEN.error.frame, max);
    expect(buf.subarray(8, 16).toString('hex')).toBe('ffffffffffffffff');
    expect(decodeFrame(buf)?.session).toBe(max);
  });

  it('u64 fields round-trip right up to 2^53-1', () => {
    const frame: Frame = { type: 'data', index: WHOLE_TRANSFER - 1, chunk: Number.MAX_SAFE_INTEGER, data: [Buffer.from([0])] };
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.subarray(20, 32).toString('hex')).toBe('fffffffe' + '001fffffffffffff');
    expect(decodeFrame(buf)?.frame).toEqual(frame);
  });
});

describe('truncated frames', () => {
  it.each(TYPES)('every proper prefix of a %s frame is "need more" (null)', (type) => {
    const buf = golden(type);
    for (let n = 0; n < buf.length; n++) {
      // A copy, so nothing past the prefix is reachable.
      expect(decodeFrame(Buffer.from(buf.subarray(0, n))), `prefix of ${n} bytes`).toBeNull();
    }
  });
});

describe('a flipped byte', () => {
  it.each(TYPES)('in the body or trailer of a %s frame fails the checksum', (type) => {
    const buf = golden(type);
    for (let i = HEADER_SIZE; i < buf.length; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const bad = Buffer.from(buf);
        bad[i]! ^= mask;
        expectError(() => decodeFrame(bad), 'E_CHECKSUM', new RegExp(`^${type} frame failed its CRC32C check`));
      }
    }
  });

  it.each(TYPES)('in the session id of a %s frame fails the checksum', (type) => {
    const buf = golden(type);
    for (let i = 8; i < 16; i++) {
      const bad = Buffer.from(buf);
      bad[i]! ^= 0x01;
      expectError(() => decodeFrame(bad), 'E_CHECKSUM');
    }
  });

  it.each(TYPES)('in the magic of a %s frame is "not sockxfer" (E_PROTOCOL)', (type) => {
    const buf = golden(type);
    for (let i = 0; i < 4; i++) {
      const bad = Buffer.from(buf);
      bad[i]! ^= 0x20; // "SXFR" -> "sXFR" etc.
      expectError(() => decodeFrame(bad), 'E_PROTOCOL', /bad magic/);
      // The header alone is enough to refuse it.
      expectError(() => decodeFrame(bad.subarray(0, HEADER_SIZE)), 'E_PROTOCOL', /bad magic/);
    }
  });

  it.each(TYPES)('in the type of a %s frame (to an unknown type) is E_PROTOCOL', (type) => {
    const bad = golden(type);
    bad[5]! ^= 0xff;
    expectError(() => decodeFrame(bad), 'E_PROTOCOL', new RegExp(`unknown frame type ${bad[5]}`));
  });

  it('in the type, changing it to another known type, fails the checksum', () => {
    const bad = golden('welcome');
    bad[5] = 0x09; // welcome -> error: header still valid, CRC no longer is
    expectError(() => decodeFrame(bad), 'E_CHECKSUM', /^error frame failed/);
  });

  it.each(TYPES.filter((t) => t !== 'offer'))('in the flags of a %s frame is E_PROTOCOL', (type) => {
    for (const [i, mask] of [[6, 0x80], [7, 0x01], [7, 0x02], [6, 0xff]] as const) {
      const bad = golden(type);
      bad[i]! ^= mask;
      expectError(() => decodeFrame(bad), 'E_PROTOCOL', new RegExp(`unknown flags 0x${bad.readUInt16BE(6).toString(16)} on a ${type} frame`));
    }
  });

  it('in the flags of an offer frame: an unknown bit is E_PROTOCOL, clearing MORE fails the checksum', () => {
    const unknown = golden('offer');
    unknown[7] = 0x03;
    expectError(() => decodeFrame(unknown), 'E_PROTOCOL', /unknown flags 0x3 on a offer frame/);
    const high = golden('offer');
    high[6] = 0x80;
    expectError(() => decodeFrame(high), 'E_PROTOCOL', /unknown flags 0x8001/);
    const cleared = golden('offer');
    cleared[7] = 0x00;
    expectError(() => decodeFrame(cleared), 'E_CHECKSUM');
  });

  it.each(TYPES)('in the length of a %s frame: a length that grew within the limit is "need more"', (type) => {
    for (const mask of [0x01, 0x80]) {
      const buf = golden(type);
      const grown = bodyLengthOf(buf) | mask;
      if (grown === bodyLengthOf(buf)) continue;
      buf.writeUInt32BE(grown, 16);
      expect(decodeFrame(buf)).toBeNull();
    }
  });

  it.each(TYPES)('in the length of a %s frame: a length that grew past the limit is E_PROTOCOL', (type) => {
    // 0xff0000xx and 0x010000xx are over every limit; 0x000100xx is over every limit but DATA's.
    const flips: Array<[number, number]> = [[16, 0xff], [16, 0x01]];
    if (type !== 'data') flips.push([17, 0x01]);
    for (const [i, mask] of flips) {
      const bad = golden(type);
      bad[i]! ^= mask;
      expectError(() => decodeFrame(bad), 'E_PROTOCOL', /over the limit/);
    }
  });

  it.each(TYPES)('in the length of a %s frame: a length one shorter fails the checksum', (type) => {
    const bad = golden(type);
    bad.writeUInt32BE(bodyLengthOf(bad) - 1, 16);
    expectError(() => decodeFrame(bad), 'E_CHECKSUM');
  });
});

describe('version', () => {
  it.each([0, 2, 255])('version %i in byte 4 is E_VERSION naming the version', (version) => {
    for (const type of TYPES) {
      const buf = golden(type);
      buf[4] = version;
      expectError(() => decodeFrame(buf), 'E_VERSION', new RegExp(`version ${version}\\b`));
      expectError(() => decodeFrame(buf.subarray(0, HEADER_SIZE)), 'E_VERSION', new RegExp(`version ${version}\\b`));
    }
  });

  it('the version error also says which version this side speaks', () => {
    const buf = golden('hello');
    buf[4] = 2;
    expectError(() => decodeFrame(buf), 'E_VERSION', /this sockxfer speaks 1$/);
  });
});

describe('unknown type', () => {
  it.each([0x00, 0x0a, 0x7f, 0xff])('type %i is E_PROTOCOL', (typeNumber) => {
    const buf = handFrame(typeNumber, '');
    expectError(() => decodeFrame(buf), 'E_PROTOCOL', new RegExp(`unknown frame type ${typeNumber}$`));
  });
});

describe('oversized lengths are refused from the header alone', () => {
  it('a data body of 0xFFFFFFFF bytes', () => {
    expectError(() => decodeFrame(headerOnly(6, 0xffffffff)), 'E_PROTOCOL', /data frame of 4294967295 bytes is over the limit of 16777228/);
  });

  it('an offer body of 1 MiB', () => {
    expectError(() => decodeFrame(headerOnly(3, 1024 * 1024)), 'E_PROTOCOL', /offer frame of 1048576 bytes is over the limit of 61440/);
  });

  it('exact limits: the largest allowed body waits for more, one byte more is refused', () => {
    const limits: Array<[number, number]> = [
      [1, 2048], // hello
      [2, 2048], // welcome
      [3, MAX_CONTROL_BODY], // offer
      [4, MAX_CONTROL_BODY], // accept
      [5, 2048], // refuse
      [6, 12 + MAX_CHUNK_SIZE], // data
      [7, 2048], // end
      [8, 2048], // verdict
      [9, 2048], // error
    ];
    for (const [type, limit] of limits) {
      expect(decodeFrame(headerOnly(type, limit)), `type ${type} at its limit`).toBeNull();
      expectError(() => decodeFrame(headerOnly(type, limit + 1)), 'E_PROTOCOL', new RegExp(`of ${limit + 1} bytes is over the limit of ${limit}$`));
    }
  });

  it('maxData lowers the data limit', () => {
    expectError(() => decodeFrame(headerOnly(6, 12 + 2000), 1024), 'E_PROTOCOL', /data frame of 2012 bytes is over the limit of 1036/);
    expect(decodeFrame(headerOnly(6, 12 + 1024), 1024)).toBeNull();
    // Control frames keep their own limits.
    expect(decodeFrame(headerOnly(3, 4096), 1024)).toBeNull();
  });

  it('maxData never raises the data limit above the protocol maximum', () => {
    expectError(() => decodeFrame(headerOnly(6, 0xffffffff), 0xffffffff), 'E_PROTOCOL', /over the limit of 16777228$/);
    expectError(() => decodeFrame(headerOnly(6, 12 + MAX_CHUNK_SIZE + 1), 2 * MAX_CHUNK_SIZE), 'E_PROTOCOL', /over the limit of 16777228$/);
  });
});

describe('field checks (frames carry a valid CRC, so the field check is what fails)', () => {
  /** Offer body prefix: chunk size 1024, xxh128, 1 file, total 0, one entry. */
  const OFFER_HEAD = '00000400 01 00000001 0000000000000000 0001';
  const entry = (size: string, name = '0001 61', kind = '00') => `00000000 ${kind} ${size} 000001a4 0000000000000000 ${name}`;

  it('the hand-built offer is itself valid', () => {
    const decoded = decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('0000000000000007')}`));
    expect(decoded?.frame).toEqual({
      type: 'offer',
      chunkSize: 1024,
      hash: 'xxh128',
      fileCount: 1,
      totalBytes: 0,
      more: false,
      entries: [{ index: 0, kind: 'file', name: 'a', size: 7, mode: 0o644, mtimeMs: 0 }],
    });
  });

  it('an entry size of 2^63-1 is E_PROTOCOL', () => {
    expectError(() => decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('7fffffffffffffff')}`)), 'E_PROTOCOL', /file size is larger than 2\^53-1/);
  });

  it('2^53 is refused and 2^53-1 accepted, in every u64 field', () => {
    expectError(() => decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('0020000000000000')}`)), 'E_PROTOCOL', /file size is larger/);
    expect((decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('001fffffffffffff')}`))?.frame as { entries: Array<{ size: number }> }).entries[0]?.size).toBe(
      2 ** 53 - 1,
    );
    expectError(() => decodeFrame(handFrame(3, '00000400 01 00000001 ffffffffffffffff 0000')), 'E_PROTOCOL', /total bytes is larger/);
    expectError(
      () => decodeFrame(handFrame(3, `${OFFER_HEAD} 00000000 00 0000000000000001 000001a4 8000000000000000 0001 61`)),
      'E_PROTOCOL',
      /mtime is larger/,
    );
    expectError(() => decodeFrame(handFrame(6, '00000000 0020000000000000 aa')), 'E_PROTOCOL', /chunk index is larger/);
    expectError(() => decodeFrame(handFrame(4, '0001 00000000 00 0001 0000000000000000 0020000000000000')), 'E_PROTOCOL', /range end is larger/);
  });

  it.each([
    ['a lone 0xff', 'ff'],
    ['an overlong NUL', 'c080'],
    ['an overlong slash', 'c0af'],
    ['a UTF-16 surrogate', 'eda080'],
    ['a truncated sequence', 'e282'],
    ['a stray continuation byte', '6180'],
    ['a code point above U+10FFFF', 'f4908080'],
  ])('a name with %s is E_PROTOCOL', (_what, nameHex) => {
    const name = `${(nameHex.length / 2).toString(16).padStart(4, '0')} ${nameHex}`;
    expectError(() => decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('0000000000000001', name)}`)), 'E_PROTOCOL', /name is not valid UTF-8/);
  });

  it('invalid UTF-8 in software and message fields is E_PROTOCOL', () => {
    expectError(() => decodeFrame(handFrame(1, '01 01 00000000 0001 ff')), 'E_PROTOCOL', /software is not valid UTF-8/);
    expectError(() => decodeFrame(handFrame(9, '0384 0002 c328')), 'E_PROTOCOL', /message is not valid UTF-8/);
  });

  it('a leading U+FEFF is part of the text, not a byte-order mark to strip', () => {
    const decoded = decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('0000000000000001', '0004 efbbbf61')}`));
    expect((decoded?.frame as { entries: Array<{ name: string }> }).entries[0]?.name).toBe('\ufeffa');
    // ...so 'a' and '\ufeffa' have different encodings, and each round-trips.
    for (const name of ['a', '\ufeffa', '\ufeff\ufeffa']) {
      const frame: Frame = { type: 'error', code: 100, message: name };
      expect(decodeFrame(encodeFrameToBuffer(frame, SESSION))?.frame).toEqual(frame);
    }
    const software = decodeFrame(handFrame(1, '01 01 00000000 0003 efbbbf'))?.frame as { software: string };
    expect(software.software).toBe('\ufeff');
  });

  it.each([
    ['hello', 1, '01 01 00000000 0000'],
    ['welcome', 2, '01 00000000 0000'],
    ['offer', 3, `${OFFER_HEAD} ${entry('0000000000000001')}`],
    ['accept', 4, '0001 00000000 00 0000'],
    ['refuse', 5, '0258 ffffffff 0000'],
    ['data', 6, '00000000 0000000000000000'],
    ['end', 7, '00000000 01 00'],
    ['verdict', 8, '00000000 00 0000 01 00 0000'],
    ['error', 9, '0064 0000'],
  ] as const)('trailing bytes after a %s body are E_PROTOCOL', (type, typeNumber, bodyHex) => {
    // The body as given is valid...
    expect(decodeFrame(handFrame(typeNumber, bodyHex))?.frame.type).toBe(type);
    if (type === 'data') return; // ...and for DATA every extra byte is chunk data.
    // ...one more byte is not.
    expectError(() => decodeFrame(handFrame(typeNumber, `${bodyHex} 00`)), 'E_PROTOCOL', new RegExp(`1 unexpected bytes after ${type}`));
  });

  it.each([0, 1, 4, 11])('a data body of %i bytes (< 12) is E_PROTOCOL', (n) => {
    const body = '00'.repeat(n);
    expectError(() => decodeFrame(handFrame(6, body)), 'E_PROTOCOL', new RegExp(`data frame of ${n} bytes is too short`));
    expectError(() => decodeFrame(headerOnly(6, n)), 'E_PROTOCOL', /too short/);
  });

  it.each([
    ['empty hello', 1, ''],
    ['hello cut inside capabilities', 1, '01 01 0000'],
    ['welcome whose software runs past the end', 2, '01 00000000 0005 7378'],
    ['offer promising 2 entries, holding 1', 3, `00000400 01 00000002 0000000000000000 0002 ${entry('0000000000000001')}`],
    ['accept promising a range it lacks', 4, '0001 00000000 00 0001 0000000000000000'],
    ['end whose digest runs past the end', 7, '00000000 01 10 0001'],
    ['refuse without a message', 5, '0258 ffffffff'],
    ['verdict cut after the status', 8, '00000000 00'],
    ['error with only half a code', 9, '00'],
  ] as const)('%s is E_PROTOCOL', (_what, typeNumber, bodyHex) => {
    expectError(() => decodeFrame(handFrame(typeNumber, bodyHex)), 'E_PROTOCOL', /runs past the end of the body/);
  });

  it.each([
    ['hash algorithm 0 in an offer', 3, '00000400 00 00000000 0000000000000000 0000', /unknown hash algorithm 0/],
    ['hash algorithm 3 in an end', 7, '00000000 03 00', /unknown hash algorithm 3/],
    ['hash algorithm 9 in a verdict', 8, '00000000 00 0000 09 00 0000', /unknown hash algorithm 9/],
    ['entry kind 2', 3, `${OFFER_HEAD} ${entry('0000000000000001', '0001 61', '02')}`, /unknown entry kind 2/],
    ['accept action 2', 4, '0001 00000000 02 0000', /unknown accept action 2/],
    ['verdict status 2', 8, '00000000 02 0000 01 00 0000', /unknown verdict status 2/],
    ['201 offer entries', 3, '00000400 01 00000000 0000000000000000 00c9', /201 offer entries, the limit is 200/],
    ['201 accept entries', 4, '00c9', /201 accept entries, the limit is 200/],
    ['1025 ranges', 4, '0001 00000000 00 0401', /1025 ranges, the limit is 1024/],
    [
      `a ${MAX_WIRE_NAME_BYTES + 1}-byte name`,
      3,
      `${OFFER_HEAD} 00000000 00 0000000000000001 000001a4 0000000000000000 ${(MAX_WIRE_NAME_BYTES + 1).toString(16).padStart(4, '0')} ${'61'.repeat(MAX_WIRE_NAME_BYTES + 1)}`,
      new RegExp(`name is ${MAX_WIRE_NAME_BYTES + 1} bytes, the limit is ${MAX_WIRE_NAME_BYTES}$`),
    ],
    ['a 65-byte software string', 1, `01 01 00000000 0041 ${'61'.repeat(65)}`, /software is 65 bytes, the limit is 64/],
    ['a 1025-byte message', 9, `0064 0401 ${'61'.repeat(1025)}`, /message is 1025 bytes, the limit is 1024/],
    ['a 65-byte digest', 7, `00000000 02 41 ${'00'.repeat(65)}`, /digest is 65 bytes, the limit is 64/],
  ] as const)('%s is E_PROTOCOL', (_what, typeNumber, bodyHex, message) => {
    expectError(() => decodeFrame(handFrame(typeNumber, bodyHex)), 'E_PROTOCOL', message);
  });

  it('a name longer than NAME_MAX still decodes: refusing it is the receiver\'s job (E_BAD_NAME), not the codec\'s', () => {
    expect(MAX_WIRE_NAME_BYTES).toBeGreaterThan(MAX_NAME_BYTES);
    const name = 'x'.repeat(MAX_NAME_BYTES + 1);
    const frame: Frame = {
      type: 'offer',
      chunkSize: 1024,
      hash: 'xxh128',
      fileCount: 1,
      totalBytes: 1,
      more: false,
      entries: [{ index: 0, kind: 'file', name, size: 1, mode: 0o644, mtimeMs: 0 }],
    };
    expect(decodeFrame(encodeFrameToBuffer(frame, SESSION))?.frame).toEqual(frame);
  });

  it('fields exactly at their limits are accepted', () => {
    const name = 'n'.repeat(MAX_WIRE_NAME_BYTES);
    const decoded = decodeFrame(
      handFrame(3, `${OFFER_HEAD} 00000000 00 0000000000000001 000001a4 0000000000000000 ${MAX_WIRE_NAME_BYTES.toString(16).padStart(4, '0')} ${Buffer.from(name).toString('hex')}`),
    );
    expect((decoded?.frame as { entries: Array<{ name: string }> }).entries[0]?.name).toBe(name);
    const digest = decodeFrame(handFrame(7, `00000000 02 40 ${'ab'.repeat(64)}`))?.frame as { digest: Buffer };
    expect(digest.digest.toString('hex')).toBe('ab'.repeat(64));
  });
});
