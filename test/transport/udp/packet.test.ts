/**
 * UDP packet codec: golden bytes written out by hand from the layout in packet.ts (the CRC
 * trailer from the bitwise reference CRC32C, never from the code under test), round trips of
 * every type, and every refusal decodePacket documents. decodePacket must never throw: it is
 * fed seeded random buffers and seeded mutations of valid packets.
 */
import { describe, expect, it } from 'vitest';
import {
  DATA_PACKET_FIELDS,
  DATA_PACKET_OVERHEAD,
  MAX_ACK_RANGES,
  MAX_COOKIE_BYTES,
  PACKET_HEADER_SIZE,
  PACKET_MAGIC,
  PACKET_TRAILER_SIZE,
  PACKET_TYPE,
  PACKET_VERSION,
  STREAM_PACKET_OVERHEAD,
  decodePacket,
  encodeDataPacket,
  encodePacket,
  peekSession,
  type Decoded,
  type DropReason,
  type Packet,
  type PacketBody,
  type PnRange,
} from '../../../src/transport/udp/packet.js';
import { hex, withCrc } from '../../helpers/bytes.js';
import { mulberry32, refCrc32c, seededBytes } from '../../helpers/seeded.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** Replaces the trailer of a whole datagram with the reference CRC of the rest. */
function fixCrc(datagram: Buffer): Buffer {
  const out = Buffer.from(datagram);
  out.writeUInt32BE(refCrc32c(out.subarray(0, out.length - 4)), out.length - 4);
  return out;
}

const SESSION = 0x0102030405060708n;
const SESSION_HEX = '0102030405060708';
/** 2^32 + 2: exercises both halves of a u64. */
const PN = 4294967298;
const PN_HEX = '00000001 00000002';

function u8(n: number): string {
  return n.toString(16).padStart(2, '0');
}
function u16(n: number): string {
  return n.toString(16).padStart(4, '0');
}
function u32(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/** A datagram built by hand: header (fields overridable), body from hex, reference CRC. */
function hand(type: number, bodyHex: string, opts: { magic?: number; version?: number; flags?: number; pnHex?: string } = {}): Buffer {
  return withCrc(
    hex(
      `${u32(opts.magic ?? 0x53584655)} ${u8(opts.version ?? 1)} ${u8(type)} ${u16(opts.flags ?? 0)} ${SESSION_HEX} ${opts.pnHex ?? PN_HEX} ${bodyHex}`,
    ),
  );
}

function expectRefused(d: Decoded, reason: DropReason): void {
  expect(d).toEqual({ ok: false, reason });
}

function expectPacket(d: Decoded): Packet {
  if (!d.ok) throw new Error(`expected a packet, got drop reason ${d.reason}`);
  return d.packet;
}

/** Encodes any body, DATA through its own encoder. */
function encodeAny(session: bigint, pn: number, body: PacketBody): Buffer {
  if (body.type === 'data') return encodeDataPacket(session, pn, body.seq, body.index, body.chunk, body.bytes);
  return encodePacket(session, pn, body);
}

/** An ACK body laid out by hand: largest, delay, maxData, then [gap, length] pairs. */
function ackBodyHex(largest: number, delay: number, maxDataHex: string, pairs: Array<[number, number]>, count = pairs.length): string {
  const largestHex = `${u32(Math.floor(largest / 2 ** 32))}${u32(largest % 2 ** 32)}`;
  return `${largestHex} ${u32(delay)} ${maxDataHex} ${u16(count)} ${pairs.map(([g, l]) => `${u32(g)} ${u32(l)}`).join(' ')}`;
}

// ---------------------------------------------------------------------------------------------
// Golden packets

interface Golden {
  body: PacketBody;
  /** Header and body written out by hand; the trailer is the reference CRC32C. */
  hex: string;
}

const HEADER = (type: number) => `53584655 01 ${u8(type)} 0000 ${SESSION_HEX} ${PN_HEX}`;

const GOLDEN: Record<PacketBody['type'], Golden> = {
  initial: {
    body: { type: 'initial', datagramSize: 1200, cookie: hex('aabbcc') },
    hex: `${HEADER(1)} 000004b0 0003 aabbcc`,
  },
  retry: {
    body: { type: 'retry', cookie: hex('dead') },
    hex: `${HEADER(2)} 0002 dead`,
  },
  ready: {
    body: { type: 'ready', window: 1048576, datagramSize: 1472 },
    hex: `${HEADER(3)} 00100000 000005c0`,
  },
  stream: {
    // offset 2^40 + 5
    body: { type: 'stream', offset: 1099511627781, bytes: Buffer.from('hello') },
    hex: `${HEADER(4)} 00000100 00000005 68656c6c6f`,
  },
  data: {
    // seq 7, file index 3, chunk 2^32 + 1, bytes 01 02 ff
    body: { type: 'data', seq: 7, index: 3, chunk: 4294967297, bytes: hex('0102ff') },
    hex: `${HEADER(5)} 00000000 00000007 00000003 00000001 00000001 0102ff`,
  },
  ack: {
    // largest 100, delay 1500 µs, maxData 2^33, ranges 90..100 and 50..79
    body: {
      type: 'ack',
      largest: 100,
      ackDelayMicros: 1500,
      maxData: 8589934592,
      ranges: [
        { start: 90, end: 100 },
        { start: 50, end: 79 },
      ],
    },
    hex: `${HEADER(6)} 00000000 00000064 000005dc 00000002 00000000 0002 00000000 0000000b 0000000a 0000001e`,
  },
  ping: {
    body: { type: 'ping' },
    hex: `${HEADER(7)}`,
  },
  close: {
    // code 3, message "é!" (c3 a9 21)
    body: { type: 'close', code: 3, message: 'é!' },
    hex: `${HEADER(8)} 00000003 0003 c3a921`,
  },
};

describe('packet constants', () => {
  it('match the documented layout', () => {
    expect(PACKET_MAGIC).toBe(0x53584655);
    expect(Buffer.from('SXFU').readUInt32BE(0)).toBe(PACKET_MAGIC);
    expect(PACKET_VERSION).toBe(1);
    expect(PACKET_HEADER_SIZE).toBe(24);
    expect(PACKET_TRAILER_SIZE).toBe(4);
    expect(DATA_PACKET_FIELDS).toBe(20);
    expect(DATA_PACKET_OVERHEAD).toBe(48);
    expect(STREAM_PACKET_OVERHEAD).toBe(36);
    expect(PACKET_TYPE).toEqual({ initial: 1, retry: 2, ready: 3, stream: 4, data: 5, ack: 6, ping: 7, close: 8 });
  });
});

describe('packet: golden bytes', () => {
  for (const [type, g] of Object.entries(GOLDEN)) {
    it(`${type} encodes to the hand-built bytes and decodes back`, () => {
      const expected = withCrc(hex(g.hex));
      const encoded = encodeAny(SESSION, PN, g.body);
      expect(encoded.toString('hex')).toBe(expected.toString('hex'));
      const packet = expectPacket(decodePacket(expected));
      expect(packet).toEqual({ session: SESSION, pn: PN, body: g.body });
      expect(peekSession(expected)).toBe(SESSION);
    });
  }

  it('the DATA trailer is the CRC32C of header, fields and chunk bytes', () => {
    const chunk = seededBytes(1000, 5);
    const buf = encodeDataPacket(SESSION, 9, 1, 2, 3, chunk);
    expect(buf.length).toBe(DATA_PACKET_OVERHEAD + chunk.length);
    expect(buf.readUInt32BE(buf.length - 4)).toBe(refCrc32c(buf.subarray(0, buf.length - 4)));
    expect(buf.subarray(PACKET_HEADER_SIZE + DATA_PACKET_FIELDS, buf.length - 4).equals(chunk)).toBe(true);
  });

  it('a STREAM packet is STREAM_PACKET_OVERHEAD bytes plus its payload', () => {
    expect(encodePacket(SESSION, 0, { type: 'stream', offset: 0, bytes: Buffer.alloc(100) }).length).toBe(STREAM_PACKET_OVERHEAD + 100);
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips

describe('packet: round trips', () => {
  const rand = mulberry32(1);
  const bodies: PacketBody[] = [
    { type: 'initial', datagramSize: 65507, cookie: Buffer.alloc(0) },
    { type: 'initial', datagramSize: 576, cookie: seededBytes(MAX_COOKIE_BYTES, 2) },
    { type: 'retry', cookie: Buffer.alloc(0) },
    { type: 'retry', cookie: seededBytes(MAX_COOKIE_BYTES, 3) },
    { type: 'ready', window: 0xffffffff, datagramSize: 0 },
    { type: 'stream', offset: 0, bytes: Buffer.alloc(0) },
    { type: 'stream', offset: Number.MAX_SAFE_INTEGER, bytes: seededBytes(1164, 4) },
    { type: 'data', seq: 0, index: 0, chunk: 0, bytes: Buffer.alloc(0) },
    { type: 'data', seq: Number.MAX_SAFE_INTEGER, index: 0xffffffff, chunk: Number.MAX_SAFE_INTEGER, bytes: seededBytes(1424, 5) },
    { type: 'ack', largest: 0, ackDelayMicros: 0, maxData: 0, ranges: [{ start: 0, end: 0 }] },
    { type: 'ack', largest: Number.MAX_SAFE_INTEGER, ackDelayMicros: 0xffffffff, maxData: Number.MAX_SAFE_INTEGER, ranges: [{ start: Number.MAX_SAFE_INTEGER - 4, end: Number.MAX_SAFE_INTEGER }] },
    { type: 'ping' },
    { type: 'close', code: 0, message: '' },
    { type: 'close', code: 0xffffffff, message: 'disk full: ünïcødé ✓ 😀' },
  ];
  for (const [i, body] of bodies.entries()) {
    it(`#${i} ${body.type}`, () => {
      const session = BigInt(Math.floor(rand() * 2 ** 32)) * 2n ** 32n + BigInt(Math.floor(rand() * 2 ** 32));
      const pn = Math.floor(rand() * Number.MAX_SAFE_INTEGER);
      const buf = encodeAny(session, pn, body);
      expect(buf.readUInt32BE(buf.length - 4)).toBe(refCrc32c(buf.subarray(0, buf.length - 4)));
      expect(expectPacket(decodePacket(buf))).toEqual({ session, pn, body });
    });
  }

  it('the largest session id and packet number (2^64 − 1, 2^53 − 1)', () => {
    const session = 2n ** 64n - 1n;
    const buf = encodePacket(session, Number.MAX_SAFE_INTEGER, { type: 'ping' });
    expect(buf.subarray(8, 24).toString('hex')).toBe('ffffffffffffffff001fffffffffffff');
    expect(expectPacket(decodePacket(buf))).toEqual({ session, pn: Number.MAX_SAFE_INTEGER, body: { type: 'ping' } });
  });

  it('an ACK with several ranges round-trips exactly, gaps and lengths as documented', () => {
    const ranges: PnRange[] = [
      { start: 1000, end: 1000 },
      { start: 990, end: 998 },
      { start: 500, end: 600 },
      { start: 2, end: 498 },
      { start: 0, end: 0 },
    ];
    const body: PacketBody = { type: 'ack', largest: 1000, ackDelayMicros: 777, maxData: 123456789, ranges };
    const buf = encodePacket(SESSION, 5, body);
    // [gap, length] per range, each gap counted below the start of the previous range
    const pairs = buf.subarray(PACKET_HEADER_SIZE + 22, buf.length - 4);
    const got: Array<[number, number]> = [];
    for (let p = 0; p < pairs.length; p += 8) got.push([pairs.readUInt32BE(p), pairs.readUInt32BE(p + 4)]);
    expect(got).toEqual([
      [0, 1], // 1000..1000
      [1, 9], // 990..998: 1000 − 998 − 1 = 1 missing (999)
      [389, 101], // 500..600: 990 − 600 − 1 = 389 missing
      [1, 497], // 2..498: 499 missing
      [1, 1], // 0..0: 1 missing
    ]);
    expect(expectPacket(decodePacket(buf)).body).toEqual(body);
  });

  it(`an ACK with MAX_ACK_RANGES (${MAX_ACK_RANGES}) single-number ranges round-trips`, () => {
    const ranges: PnRange[] = [];
    for (let i = 0; i < MAX_ACK_RANGES; i++) ranges.push({ start: 1000 - 3 * i, end: 1000 - 3 * i });
    const body: PacketBody = { type: 'ack', largest: 1000, ackDelayMicros: 1, maxData: 2, ranges };
    const buf = encodePacket(SESSION, 5, body);
    expect(buf.length).toBe(PACKET_HEADER_SIZE + 22 + 8 * MAX_ACK_RANGES + 4);
    expect(expectPacket(decodePacket(buf)).body).toEqual(body);
  });

  it('an ACK delay above u32 is clamped to 0xffffffff µs', () => {
    const buf = encodePacket(SESSION, 5, { type: 'ack', largest: 3, ackDelayMicros: 2 ** 40, maxData: 0, ranges: [{ start: 0, end: 3 }] });
    const body = expectPacket(decodePacket(buf)).body;
    expect(body.type === 'ack' && body.ackDelayMicros).toBe(0xffffffff);
  });

  it('decoded byte fields are views into the datagram (no copy)', () => {
    const buf = encodeDataPacket(SESSION, 1, 2, 3, 4, hex('00112233'));
    const body = expectPacket(decodePacket(buf)).body;
    if (body.type !== 'data') throw new Error('not data');
    expect(body.bytes.buffer).toBe(buf.buffer);
    expect(body.bytes.byteOffset).toBe(buf.byteOffset + PACKET_HEADER_SIZE + DATA_PACKET_FIELDS);
  });

  it('a CLOSE message longer than 512 UTF-16 units is cut to 512', () => {
    const buf = encodePacket(SESSION, 1, { type: 'close', code: 1, message: 'x'.repeat(600) });
    const body = expectPacket(decodePacket(buf)).body;
    expect(body).toEqual({ type: 'close', code: 1, message: 'x'.repeat(512) });
  });

  it('a CLOSE message cut at 512 UTF-16 units stays a prefix of the original (no half surrogate pair)', () => {
    // 'a' + 300 emoji: unit 512 falls between the halves of a surrogate pair.
    const message = 'a' + '😀'.repeat(300);
    const body = expectPacket(decodePacket(encodePacket(SESSION, 1, { type: 'close', code: 1, message }))).body;
    if (body.type !== 'close') throw new Error('not close');
    expect(message.startsWith(body.message)).toBe(true);
    expect(body.message.length).toBeGreaterThanOrEqual(511);
  });

  it('a CLOSE message that starts with U+FEFF round-trips exactly', () => {
    const message = '\ufeffhello';
    const body = expectPacket(decodePacket(encodePacket(SESSION, 1, { type: 'close', code: 1, message }))).body;
    expect(body).toEqual({ type: 'close', code: 1, message });
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals

describe('packet: decodePacket refuses', () => {
  it.each([0, 1, 3, 27])('%i bytes: short', (n) => {
    // Even a prefix of a valid packet (or a valid-looking 27-byte one) is short.
    const valid = withCrc(hex(GOLDEN.ping.hex));
    expect(valid.length).toBe(28);
    expectRefused(decodePacket(valid.subarray(0, n)), 'short');
    expectRefused(decodePacket(Buffer.alloc(n)), 'short');
  });

  it('every truncated prefix of every golden packet (never ok)', () => {
    for (const g of Object.values(GOLDEN)) {
      const full = withCrc(hex(g.hex));
      for (let n = 0; n < full.length; n++) {
        const d = decodePacket(full.subarray(0, n));
        expect(d.ok).toBe(false);
        if (n < 28) expectRefused(d, 'short');
      }
    }
  });

  it('the smallest packet (28 bytes, PING) is accepted', () => {
    expect(expectPacket(decodePacket(withCrc(hex(GOLDEN.ping.hex)))).body).toEqual({ type: 'ping' });
  });

  it('bad magic', () => {
    expectRefused(decodePacket(hand(7, '', { magic: 0x53584652 })), 'magic'); // the TCP frame magic "SXFR"
    expectRefused(decodePacket(hand(7, '', { magic: 0 })), 'magic');
    expectRefused(decodePacket(hand(7, '', { magic: 0x55465853 })), 'magic'); // byte-swapped
  });

  it.each([0, 2, 255])('bad version %i', (v) => {
    expectRefused(decodePacket(hand(7, '', { version: v })), 'version');
  });

  it('a flipped bit anywhere in a valid packet of each type', () => {
    for (const [type, g] of Object.entries(GOLDEN)) {
      const valid = withCrc(hex(g.hex));
      for (let bit = 0; bit < valid.length * 8; bit++) {
        const bad = Buffer.from(valid);
        bad[bit >> 3]! ^= 0x80 >> (bit & 7);
        const byte = bit >> 3;
        const expected: DropReason = byte < 4 ? 'magic' : byte === 4 ? 'version' : 'crc';
        const d = decodePacket(bad);
        if (d.ok || d.reason !== expected) expect({ type, bit, d }).toEqual({ type, bit, d: { ok: false, reason: expected } });
      }
    }
  });

  it('a wrong CRC trailer', () => {
    const valid = withCrc(hex(GOLDEN.data.hex));
    const bad = Buffer.from(valid);
    bad.writeUInt32BE((bad.readUInt32BE(bad.length - 4) + 1) >>> 0, bad.length - 4);
    expectRefused(decodePacket(bad), 'crc');
    // The CRC as little-endian is wrong too.
    const swapped = Buffer.from(valid);
    swapped.writeUInt32LE(valid.readUInt32BE(valid.length - 4), valid.length - 4);
    expectRefused(decodePacket(swapped), 'crc');
  });

  it.each([0, 9, 0x10, 255])('unknown type %i (with a correct CRC)', (t) => {
    expectRefused(decodePacket(hand(t, '')), 'malformed');
    expectRefused(decodePacket(hand(t, '00000000')), 'malformed');
  });

  it.each([2, 3, 0x8000, 0xffff])('non-zero flags %i, unknown', (flags) => {
    expectRefused(decodePacket(hand(7, '', { flags })), 'malformed');
    expectRefused(decodePacket(hand(6, ackBodyHex(3, 0, '0000000000000000', [[0, 4]]), { flags })), 'malformed');
  });

  it('flag 1 (PROTECTED): a sealed PING or ACK goes to its connection to be opened (protected); on INITIAL, RETRY or READY it is malformed', () => {
    expectRefused(decodePacket(hand(7, '', { flags: 1 })), 'protected');
    expectRefused(decodePacket(hand(6, ackBodyHex(3, 0, '0000000000000000', [[0, 4]]), { flags: 1 })), 'protected');
    expectRefused(decodePacket(hand(3, '01000000 000004b0', { flags: 1 })), 'malformed');
    expectRefused(decodePacket(hand(2, '0000', { flags: 1 })), 'malformed');
    expectRefused(decodePacket(hand(1, '000004b0 0000', { flags: 1 })), 'malformed');
  });

  describe('u64 fields at or above 2^53', () => {
    const TOO_BIG = '00200000 00000000'; // 2^53
    const MAX = '001fffff ffffffff'; // 2^53 − 1
    it('packet number', () => {
      expectRefused(decodePacket(hand(7, '', { pnHex: TOO_BIG })), 'malformed');
      expectRefused(decodePacket(hand(7, '', { pnHex: 'ffffffff ffffffff' })), 'malformed');
      expect(expectPacket(decodePacket(hand(7, '', { pnHex: MAX }))).pn).toBe(Number.MAX_SAFE_INTEGER);
    });
    it('STREAM offset', () => {
      expectRefused(decodePacket(hand(4, `${TOO_BIG} 00`)), 'malformed');
      expect(expectPacket(decodePacket(hand(4, `${MAX} 00`))).body).toEqual({ type: 'stream', offset: Number.MAX_SAFE_INTEGER, bytes: hex('00') });
    });
    it('DATA seq and chunk', () => {
      expectRefused(decodePacket(hand(5, `${TOO_BIG} 00000000 00000000 00000000`)), 'malformed');
      expectRefused(decodePacket(hand(5, `00000000 00000000 00000000 ${TOO_BIG}`)), 'malformed');
      expect(expectPacket(decodePacket(hand(5, `${MAX} 00000000 ${MAX}`))).body).toMatchObject({ seq: Number.MAX_SAFE_INTEGER, chunk: Number.MAX_SAFE_INTEGER });
    });
    it('ACK largest and maxData', () => {
      expectRefused(decodePacket(hand(6, `${TOO_BIG} 00000000 0000000000000000 0001 00000000 00000001`)), 'malformed');
      expectRefused(decodePacket(hand(6, ackBodyHex(3, 0, TOO_BIG, [[0, 4]]))), 'malformed');
      expect(expectPacket(decodePacket(hand(6, ackBodyHex(3, 0, MAX, [[0, 4]])))).body).toMatchObject({ maxData: Number.MAX_SAFE_INTEGER });
    });
  });

  describe('ACK ranges', () => {
    const MD = '0000000000000000';
    it('a valid hand-built ACK is accepted (control case)', () => {
      expect(expectPacket(decodePacket(hand(6, ackBodyHex(20, 9, MD, [[0, 3], [2, 5], [1, 1]])))).body).toEqual({
        type: 'ack',
        largest: 20,
        ackDelayMicros: 9,
        maxData: 0,
        ranges: [
          { start: 18, end: 20 },
          { start: 11, end: 15 },
          { start: 9, end: 9 },
        ],
      });
    });
    it('0 ranges', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, []))), 'malformed');
    });
    it(`more than MAX_ACK_RANGES (${MAX_ACK_RANGES + 1} ranges)`, () => {
      const pairs: Array<[number, number]> = [[0, 1]];
      for (let i = 1; i <= MAX_ACK_RANGES; i++) pairs.push([1, 1]);
      expectRefused(decodePacket(hand(6, ackBodyHex(1000, 0, MD, pairs))), 'malformed');
      // …while exactly MAX_ACK_RANGES are fine.
      expect(decodePacket(hand(6, ackBodyHex(1000, 0, MD, pairs.slice(0, MAX_ACK_RANGES)))).ok).toBe(true);
    });
    it('a range below 0', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(5, 0, MD, [[0, 7]]))), 'malformed'); // 5..-1
      expect(decodePacket(hand(6, ackBodyHex(5, 0, MD, [[0, 6]]))).ok).toBe(true); // 5..0
      // 9..10, then a range ending gap + 1 below 9
      expect(decodePacket(hand(6, ackBodyHex(10, 0, MD, [[0, 2], [8, 1]]))).ok).toBe(true); // 0..0
      expectRefused(decodePacket(hand(6, ackBodyHex(10, 0, MD, [[0, 2], [9, 1]]))), 'malformed'); // -1..-1
      expect(decodePacket(hand(6, ackBodyHex(10, 0, MD, [[0, 2], [7, 2]]))).ok).toBe(true); // 0..1
      expectRefused(decodePacket(hand(6, ackBodyHex(10, 0, MD, [[0, 2], [7, 3]]))), 'malformed'); // -1..1
      expectRefused(decodePacket(hand(6, ackBodyHex(10, 0, MD, [[0, 2], [0xffffffff, 1]]))), 'malformed');
    });
    it('a first gap other than 0', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[1, 3]]))), 'malformed');
    });
    it('a later gap of 0 (adjacent ranges must be one range)', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[0, 3], [0, 2]]))), 'malformed');
    });
    it('an empty range', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[0, 0]]))), 'malformed');
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[0, 3], [1, 0]]))), 'malformed');
    });
    it('a count that disagrees with the bytes present', () => {
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[0, 3], [1, 1]], 3))), 'malformed'); // says 3, has 2
      expectRefused(decodePacket(hand(6, ackBodyHex(20, 0, MD, [[0, 3], [1, 1]], 1))), 'malformed'); // says 1, has 2
      expectRefused(decodePacket(hand(6, `${ackBodyHex(20, 0, MD, [[0, 3]])} 00`)), 'malformed'); // trailing byte
      expectRefused(decodePacket(hand(6, `0000000000000014 00000000 ${MD} 00`)), 'malformed'); // 21-byte body
    });
  });

  describe('lengths inconsistent with the body size', () => {
    it('INITIAL', () => {
      expectRefused(decodePacket(hand(1, '000004b0 00')), 'malformed'); // 5 bytes
      expectRefused(decodePacket(hand(1, '000004b0 0004 aabbcc')), 'malformed'); // says 4, has 3
      expectRefused(decodePacket(hand(1, '000004b0 0002 aabbcc')), 'malformed'); // says 2, has 3
      expect(decodePacket(hand(1, '000004b0 0000')).ok).toBe(true);
    });
    it('RETRY', () => {
      expectRefused(decodePacket(hand(2, '00')), 'malformed');
      expectRefused(decodePacket(hand(2, '0003 dead')), 'malformed');
      expectRefused(decodePacket(hand(2, '0001 dead')), 'malformed');
      expect(decodePacket(hand(2, '0000')).ok).toBe(true);
    });
    it('READY', () => {
      expectRefused(decodePacket(hand(3, '00100000 000005')), 'malformed');
      expectRefused(decodePacket(hand(3, '00100000 000005c0 00')), 'malformed');
      expectRefused(decodePacket(hand(3, '')), 'malformed');
    });
    it('STREAM shorter than its offset', () => {
      expectRefused(decodePacket(hand(4, '00000000 000000')), 'malformed');
      expect(decodePacket(hand(4, '00000000 00000000')).ok).toBe(true);
    });
    it('DATA shorter than its fields', () => {
      expectRefused(decodePacket(hand(5, '00000000 00000000 00000000 00000000 000000')), 'malformed');
      expect(decodePacket(hand(5, '00000000 00000000 00000000 00000000 00000000')).ok).toBe(true);
    });
    it('PING with a body', () => {
      expectRefused(decodePacket(hand(7, '00')), 'malformed');
    });
    it('CLOSE', () => {
      expectRefused(decodePacket(hand(8, '00000000 00')), 'malformed');
      expectRefused(decodePacket(hand(8, '00000000 0003 6869')), 'malformed'); // says 3, has 2
      expectRefused(decodePacket(hand(8, '00000000 0001 6869')), 'malformed'); // says 1, has 2
      expect(expectPacket(decodePacket(hand(8, '00000000 0002 6869'))).body).toEqual({ type: 'close', code: 0, message: 'hi' });
    });
  });

  it(`an INITIAL or RETRY cookie longer than MAX_COOKIE_BYTES (${MAX_COOKIE_BYTES})`, () => {
    const ok = seededBytes(MAX_COOKIE_BYTES, 8).toString('hex');
    const long = seededBytes(MAX_COOKIE_BYTES + 1, 8).toString('hex');
    expectRefused(decodePacket(hand(1, `000004b0 ${u16(MAX_COOKIE_BYTES + 1)} ${long}`)), 'malformed');
    expectRefused(decodePacket(hand(2, `${u16(MAX_COOKIE_BYTES + 1)} ${long}`)), 'malformed');
    expectRefused(decodePacket(hand(2, `ffff ${long}`)), 'malformed');
    expect(decodePacket(hand(1, `000004b0 ${u16(MAX_COOKIE_BYTES)} ${ok}`)).ok).toBe(true);
    expect(decodePacket(hand(2, `${u16(MAX_COOKIE_BYTES)} ${ok}`)).ok).toBe(true);
  });

  it.each([
    ['a lone continuation byte', '80'],
    ['0xff', 'ff'],
    ['a truncated two-byte sequence', '68c3'],
    ['an overlong "/"', 'c0af'],
    ['a UTF-16 surrogate (ED A0 80)', 'eda080'],
    ['a code point above U+10FFFF', 'f4908080'],
  ])('CLOSE with invalid UTF-8: %s', (_name, bytes) => {
    const n = bytes.length / 2;
    expectRefused(decodePacket(hand(8, `00000001 ${u16(n)} ${bytes}`)), 'malformed');
  });

  it('a CLOSE message longer than the decoder allows (2048 bytes)', () => {
    const msg = Buffer.alloc(2049, 0x61).toString('hex');
    expectRefused(decodePacket(hand(8, `00000001 ${u16(2049)} ${msg}`)), 'malformed');
    expect(decodePacket(hand(8, `00000001 ${u16(2048)} ${msg.slice(2)}`)).ok).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Never throws

const REASONS: ReadonlySet<string> = new Set<DropReason>(['short', 'magic', 'version', 'crc', 'malformed', 'protected']);

/** Decodes without throwing; a packet it accepts must re-encode to exactly the same bytes. */
function checkDecode(buf: Buffer, label: string): Decoded {
  let d: Decoded;
  try {
    d = decodePacket(buf);
  } catch (e) {
    throw new Error(`decodePacket threw on ${label} (${buf.toString('hex')}): ${String(e)}`);
  }
  if (!d.ok) {
    if (!REASONS.has(d.reason)) throw new Error(`unknown drop reason ${String(d.reason)} on ${label}`);
  } else {
    const again = encodeAny(d.packet.session, d.packet.pn, d.packet.body);
    if (!again.equals(buf)) throw new Error(`accepted ${label} but it re-encodes differently: ${buf.toString('hex')} → ${again.toString('hex')}`);
  }
  return d;
}

describe('packet: decodePacket never throws', () => {
  it('on 10,000 seeded random buffers (two thirds with a valid magic and version, half of those with a valid CRC)', () => {
    const rand = mulberry32(0x5eed);
    let accepted = 0;
    const reasons = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) {
      const n = Math.floor(rand() * 120);
      let buf = seededBytes(n, 1000 + i);
      if (i % 3 !== 0 && n >= 28) {
        // Past the cheap checks, so the body parsers see the random bytes.
        buf.writeUInt32BE(PACKET_MAGIC, 0);
        if (rand() < 0.95) buf[4] = PACKET_VERSION;
        buf[5] = 1 + Math.floor(rand() * 8);
        if (rand() < 0.9) buf.writeUInt16BE(0, 6);
        else if (rand() < 0.5) buf.writeUInt16BE(1, 6); // PROTECTED: sealed, for the connection
        if (rand() < 0.9) buf[16] = 0;
        if (i % 3 === 1) buf = fixCrc(buf);
      }
      const d = checkDecode(buf, `random #${i}`);
      if (d.ok) accepted++;
      else reasons.set(d.reason, (reasons.get(d.reason) ?? 0) + 1);
    }
    // The fuzz reached every check (not just "short").
    for (const r of REASONS) expect(reasons.get(r) ?? 0, r).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
  });

  it('on 10,000 seeded mutations of valid packets (bytes changed, cut, extended; CRC fixed or not)', () => {
    const rand = mulberry32(0xbadc0de);
    const valid = [
      ...Object.values(GOLDEN).map((g) => withCrc(hex(g.hex))),
      encodePacket(SESSION, 77, {
        type: 'ack',
        largest: 500,
        ackDelayMicros: 10,
        maxData: 1 << 20,
        ranges: [
          { start: 400, end: 500 },
          { start: 300, end: 390 },
          { start: 0, end: 200 },
        ],
      }),
      encodePacket(SESSION, 78, { type: 'close', code: 2, message: 'ünïcødé 😀 text' }),
    ];
    let accepted = 0;
    let malformed = 0;
    for (let i = 0; i < 10_000; i++) {
      const base = valid[Math.floor(rand() * valid.length)]!;
      let buf: Buffer = Buffer.from(base);
      const mode = Math.floor(rand() * 4);
      if (mode === 0 || mode === 3) {
        const edits = 1 + Math.floor(rand() * 4);
        for (let k = 0; k < edits; k++) {
          // Mostly the body and the fields after the version, where the parsers look.
          const at = 5 + Math.floor(rand() * (buf.length - 9));
          buf[at] = rand() < 0.5 ? Math.floor(rand() * 256) : buf[at]! ^ (1 << Math.floor(rand() * 8));
        }
      }
      if (mode === 1) buf = buf.subarray(0, Math.floor(rand() * buf.length));
      if (mode === 2) buf = Buffer.concat([buf.subarray(0, buf.length - 4), seededBytes(1 + Math.floor(rand() * 16), i), buf.subarray(buf.length - 4)]);
      if (mode !== 1 && rand() < 0.8 && buf.length >= 4) buf = fixCrc(buf);
      const d = checkDecode(buf, `mutation #${i} (mode ${mode})`);
      if (d.ok) accepted++;
      else if (d.reason === 'malformed') malformed++;
    }
    expect(accepted).toBeGreaterThan(0);
    expect(malformed).toBeGreaterThan(500);
  });
});
