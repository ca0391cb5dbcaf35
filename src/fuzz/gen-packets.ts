/**
 * Valid UDP packets of every type with random field values, encoded by the project's own
 * encoders, plus the offsets of their length fields for the mutators.
 */
import { crc32c } from '../protocol/index.js';
import {
  MAX_ACK_RANGES,
  MAX_COOKIE_BYTES,
  PACKET_HEADER_SIZE,
  PACKET_MAGIC,
  PACKET_TRAILER_SIZE,
  PACKET_TYPE,
  PACKET_VERSION,
  encodeDataPacket,
  encodePacket,
  type PacketBody,
  type PacketType,
  type PnRange,
} from '../transport/udp/packet.js';
import type { Rng } from './random.js';
import { session, text, u53, uint } from './values.js';

export const PACKET_TYPES = Object.keys(PACKET_TYPE) as PacketType[];
const TWO_32_MINUS_1 = 0xffffffff;

/** ACK ranges as the decoder wants them: the first ends at `largest`, then descending with gaps of at least 1. */
function ackRanges(rng: Rng, largest: number): PnRange[] {
  const ranges: PnRange[] = [];
  const count = rng.chance(0.05) ? MAX_ACK_RANGES : rng.range(1, rng.chance(0.5) ? 4 : MAX_ACK_RANGES);
  let end = largest;
  for (let i = 0; i < count; i++) {
    // Lengths and gaps are u32 on the wire; small ones mostly, so many ranges fit below `largest`.
    const longest = Math.min(TWO_32_MINUS_1, end + 1);
    const length = rng.chance(0.8) ? Math.min(longest, rng.range(1, 16)) : rng.range(1, Math.min(longest, 0xfffff));
    const start = end - length + 1;
    ranges.push({ start, end });
    // The next range ends `gap` + 1 below this start, gap >= 1, and must leave room for >= 1 number.
    if (start < 2) break;
    const maxGap = Math.min(TWO_32_MINUS_1, start - 1);
    const gap = rng.chance(0.8) ? Math.min(maxGap, rng.range(1, 8)) : rng.range(1, Math.min(maxGap, 0xfffff));
    end = start - gap - 1;
  }
  return ranges;
}

/** A random packet body of the given type. */
export function randomPacketBody(rng: Rng, type: PacketType): PacketBody {
  switch (type) {
    case 'initial':
      return { type, datagramSize: uint(rng, TWO_32_MINUS_1), cookie: rng.bytes(rng.length(MAX_COOKIE_BYTES)) };
    case 'retry':
      return { type, cookie: rng.bytes(rng.length(MAX_COOKIE_BYTES)) };
    case 'ready':
      return { type, window: uint(rng, TWO_32_MINUS_1), datagramSize: uint(rng, TWO_32_MINUS_1) };
    case 'stream':
      return { type, offset: u53(rng), bytes: rng.bytes(rng.length(1400)) };
    case 'data':
      return { type, seq: u53(rng), index: uint(rng, TWO_32_MINUS_1), chunk: u53(rng), bytes: rng.bytes(rng.length(1400)) };
    case 'ack': {
      const largest = rng.chance(0.2) ? rng.below(64) : u53(rng);
      return { type, largest, ackDelayMicros: uint(rng, TWO_32_MINUS_1), maxData: u53(rng), ranges: ackRanges(rng, largest) };
    }
    case 'ping':
      return { type };
    case 'close':
      // Sometimes longer than the 512 characters the encoder keeps: it cuts them, canonically.
      return { type, code: uint(rng, TWO_32_MINUS_1), message: text(rng, rng.chance(0.1) ? 2600 : 300) };
  }
}

/** Encodes a body with the encoder for its type. */
export function encodeAnyPacket(id: bigint, pn: number, body: PacketBody): Buffer {
  return body.type === 'data' ? encodeDataPacket(id, pn, body.seq, body.index, body.chunk, body.bytes) : encodePacket(id, pn, body);
}

/** A valid encoded packet: `type` when given, else a random one. */
export function validPacket(rng: Rng, type: PacketType = rng.pick(PACKET_TYPES)): Buffer {
  return encodeAnyPacket(session(rng), u53(rng), randomPacketBody(rng, type));
}

/** Offsets of the packet number's high half and of the length and count fields of each body. */
export function packetLengthFields(type: PacketType): Array<{ at: number; width: 1 | 2 | 4 }> {
  const body = (at: number, width: 1 | 2 | 4) => ({ at: PACKET_HEADER_SIZE + at, width });
  const fields = [{ at: 16, width: 4 as const }];
  switch (type) {
    case 'initial':
      return [...fields, body(0, 4), body(4, 2)];
    case 'retry':
      return [...fields, body(0, 2)];
    case 'ready':
      return [...fields, body(0, 4), body(4, 4)];
    case 'stream':
      return [...fields, body(0, 4)];
    case 'data':
      return [...fields, body(0, 4), body(12, 4)];
    case 'ack':
      return [...fields, body(0, 4), body(12, 4), body(20, 2), body(22, 4), body(26, 4), body(30, 4), body(34, 4)];
    case 'ping':
      return fields;
    case 'close':
      return [...fields, body(4, 2)];
  }
}

/** Offsets of the u64 fields of a packet of this type: the packet number, then the body's. */
export function packetU64Fields(type: PacketType): number[] {
  const body = (at: number) => PACKET_HEADER_SIZE + at;
  switch (type) {
    case 'stream':
      return [16, body(0)];
    case 'data':
    case 'ack':
      return [16, body(0), body(12)];
    default:
      return [16];
  }
}

/** The type named in a packet's header, if the byte is a known type. */
export function packetTypeOf(buf: Buffer): PacketType | undefined {
  return buf.length > 5 ? PACKET_TYPES.find((t) => PACKET_TYPE[t] === buf[5]) : undefined;
}

/** Rewrites the CRC trailer (the last four bytes) of a datagram. */
export function fixPacketCrc(buf: Buffer): void {
  if (buf.length >= PACKET_TRAILER_SIZE) buf.writeUInt32BE(crc32c(buf.subarray(0, buf.length - PACKET_TRAILER_SIZE)), buf.length - PACKET_TRAILER_SIZE);
}

/** A header that passes the cheap checks, a random body and (mostly) a valid CRC: the body parsers see random bytes. */
export function randomBodyPacket(rng: Rng): Buffer {
  const type = rng.pick(PACKET_TYPES);
  const buf = Buffer.alloc(PACKET_HEADER_SIZE + rng.length(600) + PACKET_TRAILER_SIZE);
  rng.bytes(buf.length).copy(buf);
  buf.writeUInt32BE(PACKET_MAGIC, 0);
  buf[4] = PACKET_VERSION;
  buf[5] = PACKET_TYPE[type];
  if (rng.chance(0.9)) buf.writeUInt16BE(0, 6);
  if (rng.chance(0.9)) buf.writeUInt32BE(rng.below(0x20_0000), 16);
  if (rng.chance(0.5)) {
    for (const f of packetLengthFields(type).slice(1)) if (f.at + f.width <= buf.length - PACKET_TRAILER_SIZE) buf.writeUIntBE(rng.below(8), f.at, f.width);
  }
  if (rng.chance(0.9)) fixPacketCrc(buf);
  return buf;
}
