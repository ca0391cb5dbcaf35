/**
 * Target "packet": decodePacket, which is documented never to throw: a datagram is a packet or
 * a drop reason. The cheap checks come in a documented order (short, magic, version, crc), so
 * the reason for a datagram that fails one of them is known in advance; past them, a datagram is
 * a packet or 'malformed'. An accepted packet re-encodes to the same bytes (the encoders are
 * canonical), except a CLOSE whose message is longer than the 512 characters the encoder keeps:
 * the decoder takes up to 2048 bytes of message, whatever their count of characters.
 */
import { crc32c } from '../protocol/index.js';
import {
  MAX_ACK_RANGES,
  PACKET_HEADER_SIZE,
  PACKET_MAGIC,
  PACKET_TRAILER_SIZE,
  FLAG_PROTECTED,
  SEALABLE_TYPES,
  PACKET_TYPE,
  PACKET_VERSION,
  decodePacket,
  type Decoded,
  type DropReason,
  type Packet,
} from '../transport/udp/packet.js';
import type { FuzzInput, FuzzTarget, Verdict } from './engine.js';
import { encodeAnyPacket, fixPacketCrc, packetLengthFields, packetTypeOf, packetU64Fields, randomBodyPacket, validPacket } from './gen-packets.js';
import { mutate, type WireFormat } from './mutate.js';
import type { Rng } from './random.js';
import { accepted, finding, maybeOffset, present, rejected } from './shared.js';

const REASONS: ReadonlySet<string> = new Set<DropReason>(['short', 'magic', 'version', 'crc', 'malformed', 'protected']);
/** The encoder keeps this many characters (code points) of a CLOSE message. */
const CLOSE_MESSAGE_CHARS = 512;

const PACKET_FORMAT: WireFormat = {
  headerSize: PACKET_HEADER_SIZE,
  trailerSize: PACKET_TRAILER_SIZE,
  lengthFields: (buf) => packetLengthFields(packetTypeOf(buf) ?? 'ping'),
  u64Fields: (buf) => packetU64Fields(packetTypeOf(buf) ?? 'ping'),
  typeAt: 5,
  types: Object.values(PACKET_TYPE),
  fixCrc: fixPacketCrc,
};

function packetBytes(rng: Rng): { bytes: Buffer; origin: string } {
  const r = rng.below(100);
  if (r < 10) return { bytes: rng.bytes(rng.length(rng.chance(0.9) ? 256 : 2048)), origin: 'random bytes' };
  if (r < 15) {
    const bytes = rng.bytes(rng.length(256));
    if (bytes.length >= 5) {
      bytes.writeUInt32BE(PACKET_MAGIC, 0);
      bytes[4] = PACKET_VERSION;
    }
    return { bytes, origin: 'random bytes after magic and version' };
  }
  if (r < 30) return { bytes: randomBodyPacket(rng), origin: 'random body behind a valid header' };
  const bytes = validPacket(rng);
  const type = packetTypeOf(bytes) ?? '?';
  if (r < 50) return { bytes, origin: `valid ${type}` };
  const m = mutate(rng, bytes, PACKET_FORMAT, () => validPacket(rng));
  return { bytes: m.bytes, origin: `mutated ${type} (${m.ops.join(',')})` };
}

/** The reason the cheap checks give, in their documented order, or null when they all pass. */
function expectedEarlyReason(buf: Buffer): DropReason | null {
  if (buf.length < PACKET_HEADER_SIZE + PACKET_TRAILER_SIZE) return 'short';
  if (buf.readUInt32BE(0) !== PACKET_MAGIC) return 'magic';
  if (buf[4] !== PACKET_VERSION) return 'version';
  const end = buf.length - PACKET_TRAILER_SIZE;
  if (crc32c(buf.subarray(0, end)) !== buf.readUInt32BE(end)) return 'crc';
  return null;
}

/** What must hold of any packet decodePacket accepts, beyond re-encoding. */
function packetProblem(p: Packet, buf: Buffer): string | null {
  if (p.session !== buf.readBigUInt64BE(8)) return `session ${p.session} is not the header's`;
  if (!Number.isSafeInteger(p.pn) || p.pn < 0) return `packet number ${p.pn} is not a safe integer`;
  const b = p.body;
  if (b.type === 'ack') {
    const r = b.ranges;
    if (r.length === 0 || r.length > MAX_ACK_RANGES) return `${r.length} ACK ranges`;
    if (r[0]!.end !== b.largest) return `the first ACK range ends at ${r[0]!.end}, not at largest ${b.largest}`;
    for (let i = 0; i < r.length; i++) {
      const { start, end } = r[i]!;
      if (!Number.isSafeInteger(start) || start < 0 || start > end) return `ACK range ${i} is ${start}..${end}`;
      if (i > 0 && end >= r[i - 1]!.start - 1) return `ACK ranges ${i - 1} and ${i} touch or overlap`;
    }
  }
  return null;
}

/** Checks one datagram against decodePacket's contract. */
export function checkPacket(input: FuzzInput): Verdict {
  const buf = present(input);
  // A throw escapes to the engine, which reports it: decodePacket must never throw.
  const d: Decoded = decodePacket(buf);
  const early = expectedEarlyReason(buf);
  if (!d.ok) {
    if (!REASONS.has(d.reason)) return finding(`unknown drop reason ${String(d.reason)}`);
    if (early !== null && d.reason !== early) return finding(`dropped as '${d.reason}', the checks in order say '${early}'`);
    // Flag PROTECTED on a type that may carry it: sealed, for the connection to open.
    const sealable = early === null && buf.readUInt16BE(6) === FLAG_PROTECTED && SEALABLE_TYPES.has(buf[5]!);
    if (early === null && d.reason !== (sealable ? 'protected' : 'malformed')) return finding(`dropped as '${d.reason}', but it passes that check`);
    return rejected(d.reason);
  }
  if (early !== null) return finding(`accepted a datagram that fails the '${early}' check`);
  const problem = packetProblem(d.packet, buf);
  if (problem !== null) return finding(`accepted ${d.packet.body.type}: ${problem}`);
  const body = d.packet.body;
  const cut = body.type === 'close' && [...body.message].length > CLOSE_MESSAGE_CHARS;
  if (!cut) {
    let again: Buffer;
    try {
      again = encodeAnyPacket(d.packet.session, d.packet.pn, body);
    } catch (err) {
      return finding(`the decoded ${body.type} packet does not re-encode (${err instanceof Error ? `${err.name}: ${err.message}` : String(err)})`);
    }
    if (!again.equals(buf)) return finding(`the decoded ${body.type} packet re-encodes differently: ${again.toString('hex')}`);
  }
  return accepted(body.type);
}

export const packetTarget: FuzzTarget = {
  name: 'packet',
  generate(rng) {
    const offset = maybeOffset(rng);
    const { bytes, origin } = packetBytes(rng);
    const input: FuzzInput = { bytes, origin };
    if (offset !== undefined) input.offset = offset;
    return input;
  },
  check: checkPacket,
};
