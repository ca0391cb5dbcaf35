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
  FLAG_ABANDONED,
  FLAG_MORE,
  HEADER_SIZE,
  MAX_CHUNK_SIZE,
  MAX_CONTROL_BODY,
  MAX_ENTRY_MESSAGE_BYTES,
  MAX_HASH_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_NAME_BYTES,
  MAX_OFFER_ENTRIES,
  MAX_PATH_BYTES,
  MAX_PATH_DEPTH,
  MAX_PROTOCOL_VERSION,
  MAX_WIRE_NAME_BYTES,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  TRAILER_SIZE,
  WHOLE_TRANSFER,
  maxBodySize,
  type AcceptEntry,
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
  header.writeUInt8(opts.version ?? 2, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16BE(opts.flags ?? 0, 6);
  header.writeBigUInt64BE(SESSION, 8);
  header.writeUInt32BE(opts.length ?? body.length, 16);
  return withCrc(Buffer.concat([header, body]));
}

/** Just the 20 header bytes, for "refused before the body arrives" checks. */
function headerOnly(type: number, length: number, flags = 0): Buffer {
  return hex(`53584652 02 ${type.toString(16).padStart(2, '0')} ${flags.toString(16).padStart(4, '0')} ${SESSION_HEX} ${length.toString(16).padStart(8, '0')}`);
}

// ---------------------------------------------------------------------------------------------
// Golden frames. Each `hex` is derived by hand from the documented layout:
//   magic 53584652 | version 02 | type | flags u16 | session u64 | body length u32 | body | CRC32C

interface Golden {
  frame: Frame;
  /** Header and body; the trailer is the reference CRC32C of these bytes. */
  hex: string;
}

const GOLDEN: Record<Frame['type'], Golden> = {
  hello: {
    frame: { type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0x0a0b0c0d, software: 'sx/2' },
    hex: [
      '53584652 02 01 0000', // magic, version 2, type 1 hello, flags 0
      SESSION_HEX,
      '0000000c', // body: 12 bytes
      '02 02', // min version, max version
      '0a0b0c0d', // capabilities u32
      '0004 73782f32', // software "sx/2"
    ].join(' '),
  },
  welcome: {
    frame: { type: 'welcome', version: 2, capabilities: 0, software: 'sx' },
    hex: [
      '53584652 02 02 0000',
      SESSION_HEX,
      '00000009', // 1 + 4 + 2 + 2
      '02', // version
      '00000000', // capabilities
      '0002 7378', // "sx"
    ].join(' '),
  },
  offer: {
    frame: {
      type: 'offer',
      chunkSize: 1024 * 1024,
      hash: 'sha256',
      fileCount: 4,
      totalBytes: 2 ** 32 + 5,
      more: true,
      entries: [
        { index: 0, kind: 'file', name: 'a.txt', size: 2 ** 32, mode: 0o644, mtimeMs: 1_700_000_000_000 },
        { index: 1, kind: 'directory', name: 'd', size: 0, mode: 0o755, mtimeMs: 0 },
        { index: 2, kind: 'file', name: 'd/é', size: 5, mode: 0o600, mtimeMs: 0 },
        { index: 3, kind: 'stream', name: 'in.log', size: 0, mode: 0o644, mtimeMs: 1 },
      ],
    },
    hex: [
      '53584652 02 03 0001', // flags: MORE
      SESSION_HEX,
      '0000008f', // 19 + 32 + 28 + 31 + 33 = 143
      '00100000', // chunk size 1 MiB
      '02', // hash sha256
      '00000004', // file count
      '00000001 00000005', // total bytes 2^32 + 5
      '0004', // entry count
      // entry 0 (27 + 5 = 32 bytes): index, kind, size, mode, mtime, name
      '00000000', // index
      '00', // kind file
      '00000001 00000000', // size 2^32
      '000001a4', // mode 0o644
      '0000018b cfe56800', // mtime 1_700_000_000_000 = 0x18b_cfe56800
      '0005 612e747874', // "a.txt"
      // entry 1 (27 + 1 = 28 bytes)
      '00000001',
      '01', // kind directory
      '00000000 00000000',
      '000001ed', // mode 0o755
      '00000000 00000000',
      '0001 64', // "d"
      // entry 2 (27 + 4 = 31 bytes)
      '00000002',
      '00', // kind file
      '00000000 00000005',
      '00000180', // mode 0o600
      '00000000 00000000',
      '0004 642fc3a9', // "d/é": a relative path, "/" between components, "é" in UTF-8
      // entry 3 (27 + 6 = 33 bytes)
      '00000003',
      '02', // kind stream
      '00000000 00000000', // size 0: a stream's length is known only at its END
      '000001a4',
      '00000000 00000001', // mtime 1 ms
      '0006 696e2e6c6f67', // "in.log"
    ].join(' '),
  },
  accept: {
    frame: {
      type: 'accept',
      more: true,
      entries: [
        { index: 0, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [[0, 2], [5, 2 ** 32]] },
        { index: 1, action: 'refuse', code: 602, message: 'bad name', digest: Buffer.alloc(0), have: [] },
        { index: 2, action: 'check', code: 601, message: '', digest: hex('000102030405060708090a0b0c0d0e0f'), have: [] },
        { index: 3, action: 'update', code: 0, message: '', digest: hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff'), have: [] },
      ],
    },
    hex: [
      '53584652 02 04 0001', // flags: MORE
      SESSION_HEX,
      '0000007a', // 2 + 44 + 20 + 28 + 28 = 122
      '0004', // entry count
      // entry 0 (12 + 32 = 44 bytes): index, action, code, message, digest, range count, ranges
      '00000000 00 0000', // index 0, send, code 0
      '0000', // no message
      '00', // no digest
      '0002', // 2 ranges
      '00000000 00000000  00000000 00000002', // [0, 2)
      '00000000 00000005  00000001 00000000', // [5, 2^32)
      // entry 1 (12 + 8 = 20 bytes)
      '00000001 01 025a', // index 1, refuse, code 602 (E_BAD_NAME)
      '0008 626164206e616d65', // "bad name"
      '00', // no digest
      '0000', // no ranges
      // entry 2 (12 + 16 = 28 bytes)
      '00000002 02 0259', // index 2, check, code 601 (E_EXISTS) if it differs
      '0000',
      '10 000102030405060708090a0b0c0d0e0f', // 16-byte digest of the file in place
      '0000',
      // entry 3 (12 + 16 = 28 bytes)
      '00000003 03 0000', // index 3, update, code 0
      '0000',
      '10 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff',
      '0000',
    ].join(' '),
  },
  refuse: {
    frame: { type: 'refuse', code: 601, index: WHOLE_TRANSFER, message: 'exists' },
    hex: [
      '53584652 02 05 0000',
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
      '53584652 02 06 0000',
      SESSION_HEX,
      '0000000f', // 12 + 3
      '00000003', // file index
      '00000001 00000001', // chunk index 2^32 + 1
      '686921', // "hi!"
    ].join(' '),
  },
  end: {
    frame: { type: 'end', index: 3, size: 2 ** 32 + 7, hash: 'xxh128', digest: hex('000102030405060708090a0b0c0d0e0f'), abandoned: false },
    hex: [
      '53584652 02 07 0000', // flags 0: not abandoned
      SESSION_HEX,
      '0000001e', // 4 + 8 + 1 + 1 + 16 = 30
      '00000003', // file index
      '00000001 00000007', // size 2^32 + 7
      '01', // xxh128
      '10 000102030405060708090a0b0c0d0e0f', // digest, u8 length prefix
    ].join(' '),
  },
  verdict: {
    frame: { type: 'verdict', index: 3, status: 'committed', code: 0, hash: 'xxh128', digest: hex('ffeeddcc'), message: 'kept both', path: 'd/x (1).bin' },
    hex: [
      '53584652 02 08 0000',
      SESSION_HEX,
      '00000025', // 4 + 1 + 2 + 1 + 5 + 11 + 13 = 37
      '00000003', // file index
      '00', // status committed
      '0000', // code 0
      '01', // xxh128
      '04 ffeeddcc', // digest
      '0009 6b65707420626f7468', // message "kept both"
      '000b 642f78202831292e62696e', // path "d/x (1).bin"
    ].join(' '),
  },
  error: {
    frame: { type: 'error', code: 901, message: 'v?' },
    hex: [
      '53584652 02 09 0000',
      SESSION_HEX,
      '00000006', // 2 + 2 + 2
      '0385', // code 901
      '0002 763f', // "v?"
    ].join(' '),
  },
  auth: {
    frame: { type: 'auth', nonce: hex('aabb'), proof: hex('ccddee') },
    hex: [
      '53584652 02 0a 0000',
      SESSION_HEX,
      '00000007', // 1 + 2 + 1 + 3
      '02 aabb', // nonce
      '03 ccddee', // proof
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
    const expected = withCrc(hex(`53584652 02 06 0000 ${SESSION_HEX} 0000000c 00000000 0000000000000000`));
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(expected.toString('hex'));
    expect(decodeFrame(buf)).toEqual({ frame, session: SESSION, size: 36 });
    // No pieces at all is the same empty chunk.
    expect(encodeFrameToBuffer({ ...frame, data: [] }, SESSION).toString('hex')).toBe(expected.toString('hex'));
  });

  it('offer without MORE has flags 0; a whole-transfer committed verdict has status 0', () => {
    const offer: Frame = { type: 'offer', chunkSize: 512, hash: 'xxh128', fileCount: 0, totalBytes: 0, more: false, entries: [] };
    const offerBuf = encodeFrameToBuffer(offer, SESSION);
    expect(offerBuf.toString('hex')).toBe(
      withCrc(hex(`53584652 02 03 0000 ${SESSION_HEX} 00000013 00000200 01 00000000 0000000000000000 0000`)).toString('hex'),
    );
    expect(decodeFrame(offerBuf)?.frame).toEqual(offer);

    const verdict: Frame = { type: 'verdict', index: WHOLE_TRANSFER, status: 'committed', code: 0, hash: 'sha256', digest: Buffer.alloc(0), message: 'done', path: '' };
    const verdictBuf = encodeFrameToBuffer(verdict, SESSION);
    expect(verdictBuf.toString('hex')).toBe(
      // index, status 0, code 0, sha256, no digest, "done", empty path: 4 + 1 + 2 + 1 + 1 + 6 + 2 = 17
      withCrc(hex(`53584652 02 08 0000 ${SESSION_HEX} 00000011 ffffffff 00 0000 02 00 0004 646f6e65 0000`)).toString('hex'),
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

  it.each(TYPES.filter((t) => t !== 'offer' && t !== 'accept' && t !== 'end'))('in the flags of a %s frame (which takes no flags) is E_PROTOCOL', (type) => {
    for (const [i, mask] of [[6, 0x80], [7, 0x01], [7, 0x02], [6, 0xff]] as const) {
      const bad = golden(type);
      bad[i]! ^= mask;
      expectError(() => decodeFrame(bad), 'E_PROTOCOL', new RegExp(`unknown flags 0x${bad.readUInt16BE(6).toString(16)} on a ${type} frame$`));
    }
  });

  // offer and accept may carry MORE (0x0001), end may carry ABANDONED (0x0001); the golden offer
  // and accept have it set, the golden end has not.
  it.each([
    ['offer', 0x0001],
    ['accept', 0x0001],
    ['end', 0x0000],
  ] as const)('in the flags of a %s frame: an unknown bit is E_PROTOCOL, toggling the one known bit fails the checksum', (type, goldenFlags) => {
    expect(golden(type).readUInt16BE(6)).toBe(goldenFlags);
    for (const bit of [0x0002, 0x0004, 0x0080, 0x0100, 0x8000, 0xfffe]) {
      const bad = golden(type);
      const flags = goldenFlags | bit;
      bad.writeUInt16BE(flags, 6);
      expectError(() => decodeFrame(bad), 'E_PROTOCOL', new RegExp(`unknown flags 0x${flags.toString(16)} on a ${type} frame$`));
      // The header alone is enough to refuse it.
      expectError(() => decodeFrame(bad.subarray(0, HEADER_SIZE)), 'E_PROTOCOL', /unknown flags/);
    }
    // The known bit is allowed, but the CRC covers the header: a flipped bit fails the checksum.
    const toggled = golden(type);
    toggled[7]! ^= 0x01;
    expectError(() => decodeFrame(toggled), 'E_CHECKSUM', new RegExp(`^${type} frame failed its CRC32C check`));
  });

  it('the exact flag messages for the documented cases', () => {
    const offer = golden('offer');
    offer[7] = 0x03;
    expectError(() => decodeFrame(offer), 'E_PROTOCOL', /unknown flags 0x3 on a offer frame/);
    const accept = golden('accept');
    accept[6] = 0x80;
    expectError(() => decodeFrame(accept), 'E_PROTOCOL', /unknown flags 0x8001 on a accept frame/);
    const end = golden('end');
    end[7] = 0x02;
    expectError(() => decodeFrame(end), 'E_PROTOCOL', /unknown flags 0x2 on a end frame/);
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
  it('this build speaks version 2 only', () => {
    expect(PROTOCOL_VERSION).toBe(2);
    expect(MIN_PROTOCOL_VERSION).toBe(2);
    expect(MAX_PROTOCOL_VERSION).toBe(2);
    for (const type of TYPES) expect(golden(type)[4]).toBe(2);
  });

  it.each([0, 1, 3, 255])('version %i in byte 4 is E_VERSION naming the version', (version) => {
    for (const type of TYPES) {
      const buf = golden(type);
      buf[4] = version;
      expectError(() => decodeFrame(buf), 'E_VERSION', new RegExp(`version ${version}\\b`));
      expectError(() => decodeFrame(buf.subarray(0, HEADER_SIZE)), 'E_VERSION', new RegExp(`version ${version}\\b`));
    }
  });

  it('the version error also says which version this side speaks', () => {
    const buf = golden('hello');
    buf[4] = 1;
    expectError(() => decodeFrame(buf), 'E_VERSION', /^the peer speaks sockxfer protocol version 1; this sockxfer speaks 2$/);
  });

  it('a well-formed version-1 frame (v1 layout, valid CRC) is refused by its version before its body is read', () => {
    // A v1 VERDICT: index, committed u8, code, hash, digest, message (no path): valid CRC, old layout.
    expectError(() => decodeFrame(handFrame(8, '00000000 01 0000 01 00 0000', { version: 1 })), 'E_VERSION', /version 1\b/);
  });
});

describe('unknown type', () => {
  it.each([0x00, 0x0b, 0x7f, 0xff])('type %i is E_PROTOCOL', (typeNumber) => {
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
      [8, 8192], // verdict: room for a path of MAX_WIRE_NAME_BYTES and a message of MAX_MESSAGE_BYTES
      [9, 2048], // error
    ];
    expect(maxBodySize('verdict')).toBe(8192);
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
  /** An ACCEPT body of one entry: index 0, action, code, message, digest, no ranges (hex of each field). */
  const acceptOne = (action: string, code = '0000', message = '0000', digest = '00', ranges = '0000') => `0001 00000000 ${action} ${code} ${message} ${digest} ${ranges}`;
  /** A u16 length prefix followed by `n` bytes of "a". */
  const text = (n: number) => `${n.toString(16).padStart(4, '0')} ${'61'.repeat(n)}`;

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
    expectError(() => decodeFrame(handFrame(4, acceptOne('00', '0000', '0000', '00', '0001 0000000000000000 0020000000000000'))), 'E_PROTOCOL', /range end is larger/);
    expectError(() => decodeFrame(handFrame(4, acceptOne('00', '0000', '0000', '00', '0001 0020000000000000 0020000000000001'))), 'E_PROTOCOL', /range start is larger/);
    expect((decodeFrame(handFrame(4, acceptOne('00', '0000', '0000', '00', '0001 001ffffffffffffe 001fffffffffffff')))?.frame as { entries: AcceptEntry[] }).entries[0]?.have).toEqual([
      [2 ** 53 - 2, 2 ** 53 - 1],
    ]);
    expectError(() => decodeFrame(handFrame(7, '00000000 0020000000000000 01 00')), 'E_PROTOCOL', /^malformed frame: size is larger than 2\^53-1/);
    expect((decodeFrame(handFrame(7, '00000000 001fffffffffffff 01 00'))?.frame as { size: number }).size).toBe(2 ** 53 - 1);
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

  it('invalid UTF-8 in software, message and path fields is E_PROTOCOL', () => {
    expectError(() => decodeFrame(handFrame(1, '02 02 00000000 0001 ff')), 'E_PROTOCOL', /software is not valid UTF-8/);
    expectError(() => decodeFrame(handFrame(9, '0384 0002 c328')), 'E_PROTOCOL', /message is not valid UTF-8/);
    expectError(() => decodeFrame(handFrame(4, acceptOne('01', '0258', '0001 ff'))), 'E_PROTOCOL', /message is not valid UTF-8/);
    expectError(() => decodeFrame(handFrame(8, '00000000 00 0000 01 00 0000 0002 2fc0')), 'E_PROTOCOL', /path is not valid UTF-8/);
  });

  it('a leading U+FEFF is part of the text, not a byte-order mark to strip', () => {
    const decoded = decodeFrame(handFrame(3, `${OFFER_HEAD} ${entry('0000000000000001', '0004 efbbbf61')}`));
    expect((decoded?.frame as { entries: Array<{ name: string }> }).entries[0]?.name).toBe('\ufeffa');
    // ...so 'a' and '\ufeffa' have different encodings, and each round-trips.
    for (const name of ['a', '\ufeffa', '\ufeff\ufeffa']) {
      const frame: Frame = { type: 'error', code: 100, message: name };
      expect(decodeFrame(encodeFrameToBuffer(frame, SESSION))?.frame).toEqual(frame);
    }
    const software = decodeFrame(handFrame(1, '02 02 00000000 0003 efbbbf'))?.frame as { software: string };
    expect(software.software).toBe('\ufeff');
  });

  it.each([
    ['hello', 1, '02 02 00000000 0000'],
    ['welcome', 2, '02 00000000 0000'],
    ['offer', 3, `${OFFER_HEAD} ${entry('0000000000000001')}`],
    ['accept', 4, '0001 00000000 00 0000 0000 00 0000'],
    ['refuse', 5, '0258 ffffffff 0000'],
    ['data', 6, '00000000 0000000000000000'],
    ['end', 7, '00000000 0000000000000000 01 00'],
    ['verdict', 8, '00000000 00 0000 01 00 0000 0000'],
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
    ['empty hello', 1, '', /min version runs past/],
    ['hello cut inside capabilities', 1, '02 02 0000', /capabilities runs past/],
    ['welcome whose software runs past the end', 2, '02 00000000 0005 7378', /software runs past/],
    ['offer promising 2 entries, holding 1', 3, `00000400 01 00000002 0000000000000000 0002 ${entry('0000000000000001')}`, /entry index runs past/],
    ['accept cut after the action', 4, '0001 00000000 01', /code runs past/],
    ['accept whose message runs past the end', 4, '0001 00000000 01 0258 0005 6162', /message runs past/],
    ['accept whose digest runs past the end', 4, '0001 00000000 02 0259 0000 10 0001', /digest runs past/],
    ['accept without a range count', 4, '0001 00000000 00 0000 0000 00', /range count runs past/],
    ['accept promising a range it lacks', 4, '0001 00000000 00 0000 0000 00 0001 0000000000000000', /range end runs past/],
    ['end cut inside the size', 7, '00000000 00000000', /size runs past/],
    ['end whose digest runs past the end', 7, '00000000 0000000000000000 01 10 0001', /digest runs past/],
    ['refuse without a message', 5, '0258 ffffffff', /message runs past/],
    ['verdict cut after the status', 8, '00000000 00', /code runs past/],
    ['verdict without a path', 8, '00000000 00 0000 01 00 0000', /path runs past/],
    ['verdict whose path runs past the end', 8, '00000000 00 0000 01 00 0000 0003 6162', /path runs past/],
    ['error with only half a code', 9, '00', /code runs past/],
  ] as const)('%s is E_PROTOCOL', (_what, typeNumber, bodyHex, field) => {
    const err = expectError(() => decodeFrame(handFrame(typeNumber, bodyHex)), 'E_PROTOCOL', /runs past the end of the body/);
    expect(err.message).toMatch(field);
  });

  it.each([
    ['hash algorithm 0 in an offer', 3, '00000400 00 00000000 0000000000000000 0000', /unknown hash algorithm 0/],
    ['hash algorithm 3 in an end', 7, '00000000 0000000000000000 03 00', /unknown hash algorithm 3/],
    ['hash algorithm 9 in a verdict', 8, '00000000 00 0000 09 00 0000 0000', /unknown hash algorithm 9/],
    ['entry kind 3', 3, `${OFFER_HEAD} ${entry('0000000000000001', '0001 61', '03')}`, /unknown entry kind 3$/],
    ['entry kind 255', 3, `${OFFER_HEAD} ${entry('0000000000000001', '0001 61', 'ff')}`, /unknown entry kind 255$/],
    ['accept action 4', 4, '0001 00000000 04 0000 0000 00 0000', /unknown accept action 4$/],
    ['accept action 255', 4, '0001 00000000 ff 0000 0000 00 0000', /unknown accept action 255$/],
    ['verdict status 3', 8, '00000000 03 0000 01 00 0000 0000', /unknown verdict status 3$/],
    ['verdict status 255', 8, '00000000 ff 0000 01 00 0000 0000', /unknown verdict status 255$/],
    ['201 offer entries', 3, '00000400 01 00000000 0000000000000000 00c9', /201 offer entries, the limit is 200/],
    ['201 accept entries', 4, '00c9', /201 accept entries, the limit is 200/],
    ['1025 ranges', 4, '0001 00000000 00 0000 0000 00 0401', /1025 ranges, the limit is 1024/],
    [
      `a ${MAX_WIRE_NAME_BYTES + 1}-byte name`,
      3,
      `${OFFER_HEAD} 00000000 00 0000000000000001 000001a4 0000000000000000 ${text(MAX_WIRE_NAME_BYTES + 1)}`,
      new RegExp(`name is ${MAX_WIRE_NAME_BYTES + 1} bytes, the limit is ${MAX_WIRE_NAME_BYTES}$`),
    ],
    ['a 65-byte software string', 1, `02 02 00000000 ${text(65)}`, /software is 65 bytes, the limit is 64/],
    ['a 1025-byte error message', 9, `0064 ${text(1025)}`, /message is 1025 bytes, the limit is 1024/],
    ['a 201-byte accept message', 4, acceptOne('01', '0258', text(201)), /message is 201 bytes, the limit is 200$/],
    ['a 1025-byte verdict message', 8, `00000000 01 01f5 01 00 ${text(1025)} 0000`, /message is 1025 bytes, the limit is 1024$/],
    [
      `a ${MAX_WIRE_NAME_BYTES + 1}-byte verdict path`,
      8,
      `00000000 00 0000 01 00 0000 ${text(MAX_WIRE_NAME_BYTES + 1)}`,
      new RegExp(`path is ${MAX_WIRE_NAME_BYTES + 1} bytes, the limit is ${MAX_WIRE_NAME_BYTES}$`),
    ],
    ['a 65-byte end digest', 7, `00000000 0000000000000000 02 41 ${'00'.repeat(65)}`, /digest is 65 bytes, the limit is 64/],
    ['a 65-byte accept digest', 4, acceptOne('02', '0259', '0000', `41 ${'00'.repeat(65)}`), /digest is 65 bytes, the limit is 64/],
    ['a 65-byte verdict digest', 8, `00000000 00 0000 02 41 ${'00'.repeat(65)} 0000 0000`, /digest is 65 bytes, the limit is 64/],
  ] as const)('%s is E_PROTOCOL', (_what, typeNumber, bodyHex, message) => {
    expectError(() => decodeFrame(handFrame(typeNumber, bodyHex)), 'E_PROTOCOL', message);
  });

  it('a name longer than NAME_MAX, PATH_MAX or MAX_PATH_DEPTH still decodes: refusing it is the receiver\'s job (E_BAD_NAME), not the codec\'s', () => {
    expect(MAX_WIRE_NAME_BYTES).toBeGreaterThan(MAX_NAME_BYTES);
    expect(MAX_WIRE_NAME_BYTES).toBeGreaterThan(MAX_PATH_BYTES);
    const names = [
      'x'.repeat(MAX_NAME_BYTES + 1), // one component too long
      'x'.repeat(MAX_PATH_BYTES + 1), // the whole path too long
      Array<string>(MAX_PATH_DEPTH + 1).fill('d').join('/'), // too deep
      `${'d/'.repeat(2000)}${'x'.repeat(MAX_WIRE_NAME_BYTES - 4000)}`, // exactly the wire limit
    ];
    expect(Buffer.byteLength(names[3]!)).toBe(MAX_WIRE_NAME_BYTES);
    for (const name of names) {
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
    }
  });

  it('fields exactly at their limits are accepted', () => {
    const name = 'n'.repeat(MAX_WIRE_NAME_BYTES);
    const decoded = decodeFrame(
      handFrame(3, `${OFFER_HEAD} 00000000 00 0000000000000001 000001a4 0000000000000000 ${MAX_WIRE_NAME_BYTES.toString(16).padStart(4, '0')} ${Buffer.from(name).toString('hex')}`),
    );
    expect((decoded?.frame as { entries: Array<{ name: string }> }).entries[0]?.name).toBe(name);
    const digest = decodeFrame(handFrame(7, `00000000 0000000000000000 02 40 ${'ab'.repeat(64)}`))?.frame as { digest: Buffer };
    expect(digest.digest.toString('hex')).toBe('ab'.repeat(64));
    const accept = decodeFrame(handFrame(4, acceptOne('01', '0258', text(MAX_ENTRY_MESSAGE_BYTES), `40 ${'cd'.repeat(64)}`)))?.frame as { entries: AcceptEntry[] };
    expect(accept.entries[0]?.message).toBe('a'.repeat(200));
    expect(accept.entries[0]?.digest.toString('hex')).toBe('cd'.repeat(64));
    const verdict = decodeFrame(handFrame(8, `00000000 01 01f5 01 40 ${'ef'.repeat(64)} ${text(MAX_MESSAGE_BYTES)} ${text(MAX_WIRE_NAME_BYTES)}`))?.frame as {
      message: string;
      path: string;
      digest: Buffer;
    };
    expect(verdict.message).toBe('a'.repeat(MAX_MESSAGE_BYTES));
    expect(verdict.path).toBe('a'.repeat(MAX_WIRE_NAME_BYTES));
    expect(verdict.digest.toString('hex')).toBe('ef'.repeat(64));
  });
});

describe('version 2: entry kinds, ACCEPT actions, END flags, VERDICT statuses', () => {
  /** Header, body and reference CRC of a frame written out by hand. */
  const frameHex = (type: string, flags: string, length: string, body: string) => withCrc(hex(`53584652 02 ${type} ${flags} ${SESSION_HEX} ${length} ${body}`));

  it('the header flags are bit 0', () => {
    expect(FLAG_MORE).toBe(0x0001);
    expect(FLAG_ABANDONED).toBe(0x0001);
  });

  it('an offer entry of kind stream round-trips; kind directory too', () => {
    const frame: Frame = {
      type: 'offer',
      chunkSize: 65536,
      hash: 'xxh128',
      fileCount: 2,
      totalBytes: 0,
      more: false,
      entries: [
        { index: 7, kind: 'stream', name: 'stdin', size: 0, mode: 0o644, mtimeMs: 1_600_000_000_123 },
        { index: 8, kind: 'directory', name: 'a/b', size: 0, mode: 0o700, mtimeMs: 0 },
      ],
    };
    // head 19 + stream entry (27 + 5) + directory entry (27 + 3) = 81 = 0x51
    const body = hex(
      [
        '00010000 01 00000002 0000000000000000 0002', // chunk size 65536, xxh128, 2 entries in all, 0 bytes, 2 here
        '00000007 02 0000000000000000 000001a4 00000174876e807b 0005 737464696e', // stream "stdin", mtime 0x174876e807b
        '00000008 01 0000000000000000 000001c0 0000000000000000 0003 612f62', // directory "a/b", mode 0o700
      ].join(' '),
    );
    expect(body.length).toBe(19 + 32 + 30);
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(frameHex('03', '0000', '00000051', body.toString('hex')).toString('hex'));
    expect(decodeFrame(buf)?.frame).toEqual(frame);
  });

  it('an accept with more=false has flags 0; with more=true flag 1; both round-trip', () => {
    const entries: AcceptEntry[] = [{ index: 7, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] }];
    const body = '0001 00000007 00 0000 0000 00 0000'; // 2 + 12 = 14
    for (const [more, flags] of [[false, '0000'], [true, '0001']] as const) {
      const frame: Frame = { type: 'accept', entries, more };
      const buf = encodeFrameToBuffer(frame, SESSION);
      expect(buf.toString('hex')).toBe(frameHex('04', flags, '0000000e', body).toString('hex'));
      expect(buf.readUInt16BE(6)).toBe(more ? FLAG_MORE : 0);
      expect(decodeFrame(buf)?.frame).toEqual(frame);
    }
    // An empty ACCEPT (the last one of a transfer whose answers all went before) is two bytes.
    const empty: Frame = { type: 'accept', entries: [], more: false };
    const emptyBuf = encodeFrameToBuffer(empty, SESSION);
    expect(emptyBuf.toString('hex')).toBe(frameHex('04', '0000', '00000002', '0000').toString('hex'));
    expect(decodeFrame(emptyBuf)?.frame).toEqual(empty);
  });

  it('an accept entry refusing with a code and a message; one checking with a 16-byte digest', () => {
    const frame: Frame = {
      type: 'accept',
      more: false,
      entries: [
        { index: 4, action: 'refuse', code: 604, message: 'over --max-size', digest: Buffer.alloc(0), have: [] },
        { index: 5, action: 'check', code: 601, message: '', digest: hex('00112233445566778899aabbccddeeff'), have: [] },
      ],
    };
    const body = [
      '0002',
      '00000004 01 025c 000f 6f766572202d2d6d61782d73697a65 00 0000', // refuse, 604 (E_LIMIT), "over --max-size" (15 bytes)
      '00000005 02 0259 0000 10 00112233445566778899aabbccddeeff 0000', // check, 601 (E_EXISTS), 16-byte digest
    ].join(' ');
    // 2 + (12 + 15) + (12 + 16) = 57
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(frameHex('04', '0000', '00000039', body).toString('hex'));
    const decoded = decodeFrame(buf)?.frame;
    expect(decoded).toEqual(frame);
    if (decoded?.type !== 'accept') throw new Error('not an accept');
    expect(decoded.entries[0]).toMatchObject({ action: 'refuse', code: 604, message: 'over --max-size' });
    expect(decoded.entries[1]?.action).toBe('check');
    expect(decoded.entries[1]?.digest.length).toBe(16);
  });

  it('an accept message over 200 bytes: the encoder throws, the decoder refuses it (E_PROTOCOL)', () => {
    expect(MAX_ENTRY_MESSAGE_BYTES).toBe(200);
    const entry = (message: string): Frame => ({
      type: 'accept',
      more: false,
      entries: [{ index: 0, action: 'refuse', code: 600, message, digest: Buffer.alloc(0), have: [] }],
    });
    // 200 bytes, and 100 two-byte characters, are fine...
    for (const message of ['m'.repeat(200), 'é'.repeat(100)]) {
      expect(decodeFrame(encodeFrameToBuffer(entry(message), SESSION))?.frame).toEqual(entry(message));
    }
    // ...one byte more is not, counted in UTF-8 bytes rather than characters.
    expect(() => encodeFrameToBuffer(entry('m'.repeat(201)), SESSION)).toThrow(RangeError);
    expect(() => encodeFrameToBuffer(entry('é'.repeat(100) + 'm'), SESSION)).toThrow(RangeError);
    expectError(
      () => decodeFrame(handFrame(4, `0001 00000000 01 0258 00c9 ${'6d'.repeat(201)} 00 0000`)),
      'E_PROTOCOL',
      /^malformed frame: message is 201 bytes, the limit is 200$/,
    );
  });

  it('the encoder refuses an accept of more than 200 entries, an entry of more than 1024 ranges, a digest over 64 bytes', () => {
    const e: AcceptEntry = { index: 0, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] };
    expect(() => encodeFrameToBuffer({ type: 'accept', more: false, entries: Array<AcceptEntry>(MAX_OFFER_ENTRIES + 1).fill(e) }, SESSION)).toThrow(RangeError);
    const ranges = Array.from({ length: 1025 }, (_, i): [number, number] => [2 * i, 2 * i + 1]);
    expect(() => encodeFrameToBuffer({ type: 'accept', more: false, entries: [{ ...e, have: ranges }] }, SESSION)).toThrow(RangeError);
    const fine: Frame = { type: 'accept', more: false, entries: [{ ...e, have: ranges.slice(0, 1024) }] };
    expect(decodeFrame(encodeFrameToBuffer(fine, SESSION))?.frame).toEqual(fine);
    expect(() => encodeFrameToBuffer({ type: 'accept', more: false, entries: [{ ...e, action: 'check', digest: Buffer.alloc(MAX_HASH_BYTES + 1) }] }, SESSION)).toThrow(
      RangeError,
    );
  });

  it('a full ACCEPT (200 refusals, each with a 200-byte message and a 64-byte digest) fits a control frame and round-trips', () => {
    const entries: AcceptEntry[] = Array.from({ length: MAX_OFFER_ENTRIES }, (_, i) => ({
      index: i,
      action: 'refuse',
      code: 600 + (i % 6),
      message: String.fromCharCode(0x41 + (i % 26)).repeat(MAX_ENTRY_MESSAGE_BYTES),
      digest: Buffer.alloc(MAX_HASH_BYTES, i),
      have: [],
    }));
    const frame: Frame = { type: 'accept', more: true, entries };
    const buf = encodeFrameToBuffer(frame, SESSION);
    const bodyLength = 2 + MAX_OFFER_ENTRIES * (12 + MAX_ENTRY_MESSAGE_BYTES + MAX_HASH_BYTES);
    expect(bodyLength).toBe(55_202);
    expect(bodyLength).toBeLessThanOrEqual(MAX_CONTROL_BODY);
    expect(buf.readUInt32BE(16)).toBe(bodyLength);
    expect(buf.length).toBe(HEADER_SIZE + bodyLength + TRAILER_SIZE);
    expect(decodeFrame(buf)).toEqual({ frame, session: SESSION, size: buf.length });
  });

  it('an end with abandoned=true sets flag 1 and round-trips', () => {
    const frame: Frame = { type: 'end', index: 5, size: 0, hash: 'sha256', digest: Buffer.alloc(0), abandoned: true };
    const buf = encodeFrameToBuffer(frame, SESSION);
    // index 5, size 0, sha256, empty digest: 4 + 8 + 1 + 1 = 14
    expect(buf.toString('hex')).toBe(frameHex('07', '0001', '0000000e', '00000005 0000000000000000 02 00').toString('hex'));
    expect(buf.readUInt16BE(6)).toBe(FLAG_ABANDONED);
    expect(decodeFrame(buf)?.frame).toEqual(frame);
    // The same body without the flag is an ordinary END.
    expect(decodeFrame(handFrame(7, '00000005 0000000000000000 02 00'))?.frame).toEqual({ ...frame, abandoned: false });
  });

  it('an unknown END flag bit (0x0002) is refused, alone or with ABANDONED, though the CRC is valid', () => {
    const body = '00000005 0000000000000000 02 00';
    expectError(() => decodeFrame(handFrame(7, body, { flags: 0x0002 })), 'E_PROTOCOL', /^unknown flags 0x2 on a end frame$/);
    expectError(() => decodeFrame(handFrame(7, body, { flags: 0x0003 })), 'E_PROTOCOL', /^unknown flags 0x3 on a end frame$/);
    expect((decodeFrame(handFrame(7, body, { flags: 0x0001 }))?.frame as { abandoned: boolean }).abandoned).toBe(true);
  });

  it('a data frame takes no flags: MORE or ABANDONED on DATA is E_PROTOCOL', () => {
    expectError(() => decodeFrame(handFrame(6, '00000000 0000000000000000 aa', { flags: 0x0001 })), 'E_PROTOCOL', /^unknown flags 0x1 on a data frame$/);
    expectError(() => decodeFrame(handFrame(8, '00000000 00 0000 01 00 0000 0000', { flags: 0x0001 })), 'E_PROTOCOL', /^unknown flags 0x1 on a verdict frame$/);
  });

  it.each([
    // committed: the file landed under a keep-both name
    [
      'committed',
      0,
      { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'xxh128', digest: hex('0102'), message: '', path: 'x (1).bin' },
      '00000000 00 0000 01 02 0102 0000 0009 78202831292e62696e', // 4 + 1 + 2 + 1 + 3 + 2 + 11 = 24
      '00000018',
    ],
    // failed: code 501, no path
    [
      'failed',
      1,
      { type: 'verdict', index: 1, status: 'failed', code: 501, hash: 'sha256', digest: Buffer.alloc(0), message: 'bad', path: '' },
      '00000001 01 01f5 02 00 0003 626164 0000', // 4 + 1 + 2 + 1 + 1 + 5 + 2 = 16
      '00000010',
    ],
    // up-to-date: the receiver's own digest of the identical file in place
    [
      'up-to-date',
      2,
      { type: 'verdict', index: 2, status: 'up-to-date', code: 0, hash: 'xxh128', digest: Buffer.alloc(16, 0xab), message: '', path: 'same.txt' },
      `00000002 02 0000 01 10 ${'ab'.repeat(16)} 0000 0008 73616d652e747874`, // 4 + 1 + 2 + 1 + 17 + 2 + 10 = 37
      '00000025',
    ],
  ] as Array<[string, number, Frame, string, string]>)('verdict status %s is %i on the wire and round-trips', (_status, wire, frame, body, length) => {
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(frameHex('08', '0000', length, body).toString('hex'));
    expect(buf[HEADER_SIZE + 4]).toBe(wire);
    expect(decodeFrame(buf)?.frame).toEqual(frame);
  });

  it('verdict status 3 is refused (E_PROTOCOL)', () => {
    expectError(() => decodeFrame(handFrame(8, '00000002 03 0000 01 00 0000 0000')), 'E_PROTOCOL', /^malformed frame: unknown verdict status 3$/);
  });

  it('a verdict with a 4,300-byte path round-trips (over the old 2048-byte verdict limit)', () => {
    const path = `${'abcdefghi/'.repeat(429)}abcdefghij`;
    expect(Buffer.byteLength(path)).toBe(4300);
    const frame: Frame = { type: 'verdict', index: 9, status: 'committed', code: 0, hash: 'sha256', digest: Buffer.alloc(32, 0x5a), message: 'ok', path };
    // 4 + 1 + 2 + 1 + 33 + 4 + 2 + 4300 = 4347 = 0x10fb
    const body = `00000009 00 0000 02 20 ${'5a'.repeat(32)} 0002 6f6b 10cc ${Buffer.from(path).toString('hex')}`;
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.toString('hex')).toBe(frameHex('08', '0000', '000010fb', body).toString('hex'));
    expect(decodeFrame(buf)).toEqual({ frame, session: SESSION, size: HEADER_SIZE + 4347 + TRAILER_SIZE });
    // Every prefix of it waits for more.
    for (const n of [0, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 2048, buf.length - 1]) {
      expect(decodeFrame(Buffer.from(buf.subarray(0, n))), `prefix of ${n} bytes`).toBeNull();
    }
  });

  it('the largest verdict (64-byte digest, 1024-byte message, 4352-byte path) fits the verdict limit', () => {
    const frame: Frame = {
      type: 'verdict',
      index: 0,
      status: 'failed',
      code: 803,
      hash: 'sha256',
      digest: Buffer.alloc(MAX_HASH_BYTES, 1),
      message: 'm'.repeat(MAX_MESSAGE_BYTES),
      path: 'p'.repeat(MAX_WIRE_NAME_BYTES),
    };
    const buf = encodeFrameToBuffer(frame, SESSION);
    expect(buf.readUInt32BE(16)).toBe(4 + 1 + 2 + 1 + 65 + 1026 + 4354);
    expect(buf.readUInt32BE(16)).toBeLessThanOrEqual(maxBodySize('verdict'));
    expect(decodeFrame(buf)?.frame).toEqual(frame);
  });

  it('the verdict encoder refuses a path over MAX_WIRE_NAME_BYTES and a message over MAX_MESSAGE_BYTES', () => {
    const base: Frame = { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'xxh128', digest: Buffer.alloc(0), message: '', path: '' };
    expect(() => encodeFrameToBuffer({ ...base, path: 'p'.repeat(MAX_WIRE_NAME_BYTES + 1) }, SESSION)).toThrow(RangeError);
    expect(() => encodeFrameToBuffer({ ...base, message: 'm'.repeat(MAX_MESSAGE_BYTES + 1) }, SESSION)).toThrow(RangeError);
  });
});
