/**
 * The UDP packet: one datagram, checked whole by a CRC32C trailer. Pure functions, no I/O.
 *
 *   0  u32  magic "SXFU"
 *   4  u8   version (1)
 *   5  u8   packet type
 *   6  u16  flags (none defined; must be 0)
 *   8  u64  session id (chosen by the sender; with the peer's address it names the connection)
 *   16 u64  packet number (never reused within a session: a retransmission is a new packet)
 *   24 …    body
 *   …  u32  CRC32C of everything before it
 *
 * Bodies:
 *   INITIAL  u32 datagram size the sender will use, u16 cookie length, cookie  (sender → receiver)
 *   RETRY    u16 cookie length, cookie                                        (receiver → sender, stateless)
 *   READY    u32 receive window in bytes, u32 largest datagram accepted         (receiver → sender)
 *   STREAM   u64 offset, bytes: a piece of the ordered control stream, which carries
 *            the shared protocol's encoded frames (HELLO, OFFER, END, VERDICT, …)
 *   DATA     u64 data sequence, u32 file index, u64 chunk index, chunk bytes: one DATA frame,
 *            delivered in any order (the receiver writes each chunk at its offset)
 *   ACK      u64 largest, u32 ack delay (µs), u64 flow-control limit (bytes), u16 range count,
 *            then per range u32 gap, u32 length: the first range ends at `largest`, each next one
 *            ends `gap` + 1 numbers below the start of the one before
 *   PING     empty: asks for an ACK (keep-alive, probes)
 *   CLOSE    u32 wire error code (0: done), u16 message length, message
 *
 * A DATA packet's CRC covers the chunk bytes: it is the chunk's CRC32C of the shared protocol.
 *
 * Protected packets (with a key, after the key handshake; every type but INITIAL, RETRY and
 * READY): flag PROTECTED in the header, the body sealed with AES-256-GCM (the header is the AAD,
 * the nonce the IV XOR the packet number) followed by the 16-byte tag, then the CRC32C over it
 * all. The CRC still tells line corruption (counted as corrupt) from forgery (counted as
 * unauthenticated); a replayed packet repeats a packet number and is dropped as a duplicate.
 */
import { TAG_SIZE, crc32c, open, seal, type DirectionKey } from '../../protocol/index.js';
import { nativeCrcOk, nativeEncodeData } from './batch.js';

export const PACKET_MAGIC = 0x53584655; // "SXFU"
export const PACKET_VERSION = 1;
export const PACKET_HEADER_SIZE = 24;
export const PACKET_TRAILER_SIZE = 4;
/** DATA body before the chunk bytes. */
export const DATA_PACKET_FIELDS = 20;
/** Bytes of a DATA datagram that are not chunk bytes. */
export const DATA_PACKET_OVERHEAD = PACKET_HEADER_SIZE + DATA_PACKET_FIELDS + PACKET_TRAILER_SIZE;
export const STREAM_PACKET_OVERHEAD = PACKET_HEADER_SIZE + 8 + PACKET_TRAILER_SIZE;
/** The largest UDP payload over IPv4 (65535 − 20 − 8). */
export const MAX_DATAGRAM_SIZE = 65507;
export const MIN_DATAGRAM_SIZE = 576;
/** Safe on any real path (QUIC's minimum). */
export const DEFAULT_DATAGRAM_SIZE = 1200;
/** A full Ethernet frame: 1500 − IP header − UDP header. */
export const ETHERNET_DATAGRAM_SIZE = { ipv4: 1472, ipv6: 1452 } as const;
export const MAX_COOKIE_BYTES = 64;
/** ACK ranges per ACK packet: enough history to cover a few round trips of scattered loss, small enough for 1200 bytes. */
export const MAX_ACK_RANGES = 64;
const MAX_CLOSE_MESSAGE = 512;
/** Header flag: the body is sealed (see protectPacket). */
export const FLAG_PROTECTED = 0x0001;
/** What protection adds to a packet. */
export const PROTECTION_OVERHEAD = TAG_SIZE;

export const PACKET_TYPE = {
  initial: 1,
  retry: 2,
  ready: 3,
  stream: 4,
  data: 5,
  ack: 6,
  ping: 7,
  close: 8,
} as const;
export type PacketType = keyof typeof PACKET_TYPE;
const TYPE_NAME = new Map<number, PacketType>((Object.keys(PACKET_TYPE) as PacketType[]).map((t) => [PACKET_TYPE[t], t]));
/** The types that are sealed after the key handshake: all but the handshake's own. */
export const SEALABLE_TYPES: ReadonlySet<number> = new Set([PACKET_TYPE.stream, PACKET_TYPE.data, PACKET_TYPE.ack, PACKET_TYPE.ping, PACKET_TYPE.close]);

/** An inclusive range of packet numbers. */
export interface PnRange {
  start: number;
  end: number;
}

export interface AckBody {
  largest: number;
  ackDelayMicros: number;
  /** The receiver's flow-control limit: total bytes of new payload the sender may have sent. */
  maxData: number;
  /** Newest first, disjoint, descending; ranges[0].end === largest. */
  ranges: PnRange[];
}

export type PacketBody =
  | { type: 'initial'; datagramSize: number; cookie: Buffer }
  | { type: 'retry'; cookie: Buffer }
  | { type: 'ready'; window: number; datagramSize: number }
  | { type: 'stream'; offset: number; bytes: Buffer }
  | { type: 'data'; seq: number; index: number; chunk: number; bytes: Buffer }
  | ({ type: 'ack' } & AckBody)
  | { type: 'ping' }
  | { type: 'close'; code: number; message: string };

export interface Packet {
  session: bigint;
  pn: number;
  body: PacketBody;
}

const TWO_32 = 0x1_0000_0000;

function writeU64(buf: Buffer, v: number, at: number): void {
  buf.writeUInt32BE(Math.floor(v / TWO_32), at);
  buf.writeUInt32BE(v % TWO_32, at + 4);
}

/** A u64 below 2^53, or -1. */
function readU64(buf: Buffer, at: number): number {
  const hi = buf.readUInt32BE(at);
  if (hi > 0x1f_ffff) return -1;
  return hi * TWO_32 + buf.readUInt32BE(at + 4);
}

/** The first MAX_CLOSE_MESSAGE characters (code points, so a pair is never split). */
function closeMessage(message: string): string {
  return Array.from(message).slice(0, MAX_CLOSE_MESSAGE).join('');
}

function writeHeader(buf: Buffer, type: PacketType, session: bigint, pn: number): void {
  buf.writeUInt32BE(PACKET_MAGIC, 0);
  buf[4] = PACKET_VERSION;
  buf[5] = PACKET_TYPE[type];
  buf.writeUInt16BE(0, 6);
  buf.writeBigUInt64BE(session, 8);
  writeU64(buf, pn, 16);
}

/** Encodes a packet whose body is small (anything but DATA) into one buffer. */
export function encodePacket(session: bigint, pn: number, body: Exclude<PacketBody, { type: 'data' }>): Buffer {
  let size: number;
  switch (body.type) {
    case 'initial':
      size = 6 + body.cookie.length;
      break;
    case 'retry':
      size = 2 + body.cookie.length;
      break;
    case 'ready':
      size = 8;
      break;
    case 'stream':
      size = 8 + body.bytes.length;
      break;
    case 'ack':
      size = 22 + 8 * body.ranges.length;
      break;
    case 'ping':
      size = 0;
      break;
    case 'close':
      size = 6 + Buffer.byteLength(closeMessage(body.message));
      break;
  }
  const buf = Buffer.allocUnsafe(PACKET_HEADER_SIZE + size + PACKET_TRAILER_SIZE);
  writeHeader(buf, body.type, session, pn);
  let at = PACKET_HEADER_SIZE;
  switch (body.type) {
    case 'initial':
      buf.writeUInt32BE(body.datagramSize, at);
      buf.writeUInt16BE(body.cookie.length, at + 4);
      body.cookie.copy(buf, at + 6);
      break;
    case 'retry':
      buf.writeUInt16BE(body.cookie.length, at);
      body.cookie.copy(buf, at + 2);
      break;
    case 'ready':
      buf.writeUInt32BE(body.window, at);
      buf.writeUInt32BE(body.datagramSize, at + 4);
      break;
    case 'stream':
      writeU64(buf, body.offset, at);
      body.bytes.copy(buf, at + 8);
      break;
    case 'ack': {
      writeU64(buf, body.largest, at);
      buf.writeUInt32BE(Math.min(body.ackDelayMicros, 0xffffffff), at + 8);
      writeU64(buf, body.maxData, at + 12);
      buf.writeUInt16BE(body.ranges.length, at + 20);
      at += 22;
      let below = body.largest + 1;
      for (const r of body.ranges) {
        buf.writeUInt32BE(below - r.end - 1, at);
        buf.writeUInt32BE(r.end - r.start + 1, at + 4);
        below = r.start;
        at += 8;
      }
      break;
    }
    case 'ping':
      break;
    case 'close': {
      const msg = Buffer.from(closeMessage(body.message));
      buf.writeUInt32BE(body.code, at);
      buf.writeUInt16BE(msg.length, at + 4);
      msg.copy(buf, at + 6);
      break;
    }
  }
  buf.writeUInt32BE(crc32c(buf.subarray(0, buf.length - PACKET_TRAILER_SIZE)), buf.length - PACKET_TRAILER_SIZE);
  return buf;
}

/**
 * Encodes DATA packets into one buffer each: header, fields, the chunk bytes (copied) and the CRC.
 * One buffer per datagram is cheaper to send than a scatter list. The hot path of a sender, so:
 * the first 16 header bytes (magic … session) are copied from a template, and packets are cut
 * from a slab instead of allocated one by one.
 */
export class DataPacketEncoder {
  private readonly template = Buffer.allocUnsafe(PACKET_HEADER_SIZE);
  private slab = Buffer.allocUnsafe(0);
  private used = 0;

  /**
   * `idle` says whether every datagram handed to the socket has reached the kernel (nothing is
   * queued in Node): the slab may then be reused instead of replaced.
   */
  constructor(
    session: bigint,
    private readonly idle: () => boolean = () => false,
  ) {
    writeHeader(this.template, 'data', session, 0);
  }

  encode(pn: number, seq: number, index: number, chunk: number, bytes: Buffer): Buffer {
    const headSize = PACKET_HEADER_SIZE + DATA_PACKET_FIELDS;
    const end = headSize + bytes.length;
    const size = end + PACKET_TRAILER_SIZE;
    if (this.used + size > this.slab.length) {
      if (!this.idle() || this.slab.length < size) this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, size));
      this.used = 0;
    }
    if (nativeEncodeData !== null) {
      // The same bytes in one call (native/udp_batch.c): copy, fields and CRC.
      const at = this.used;
      this.used += nativeEncodeData(this.slab, at, this.template, pn, seq, index, chunk, bytes);
      return this.slab.subarray(at, this.used);
    }
    const buf = this.slab.subarray(this.used, this.used + size);
    this.used += size;
    this.template.copy(buf, 0, 0, 16);
    writeU64(buf, pn, 16);
    writeU64(buf, seq, PACKET_HEADER_SIZE);
    buf.writeUInt32BE(index, PACKET_HEADER_SIZE + 8);
    writeU64(buf, chunk, PACKET_HEADER_SIZE + 12);
    bytes.copy(buf, headSize);
    buf.writeUInt32BE(crc32c(buf.subarray(0, end)), end);
    return buf;
  }
}

const SLAB_SIZE = 256 * 1024;

/** One DATA packet (see DataPacketEncoder, which a sender keeps). */
export function encodeDataPacket(session: bigint, pn: number, seq: number, index: number, chunk: number, bytes: Buffer): Buffer {
  return new DataPacketEncoder(session).encode(pn, seq, index, chunk, bytes);
}

/** Why a datagram was dropped, for counters; a datagram is never answered with an error. */
export type DropReason = 'short' | 'magic' | 'version' | 'crc' | 'malformed' | 'protected';

/** What decodePacket found wrong, or the packet. Corrupt datagrams are dropped and count as lost. */
export type Decoded = { ok: true; packet: Packet } | { ok: false; reason: DropReason };

const bad = (reason: DropReason): Decoded => ({ ok: false, reason });

/** The session id of a datagram that passed decodePacket's checks, read without decoding (for demultiplexing). */
export function peekSession(buf: Buffer): bigint {
  return buf.readBigUInt64BE(8);
}

/**
 * Checks and decodes one datagram. Never throws: anything malformed is reported as a drop
 * reason. Byte fields are views into `buf`.
 */
export function decodePacket(buf: Buffer): Decoded {
  if (buf.length < PACKET_HEADER_SIZE + PACKET_TRAILER_SIZE) return bad('short');
  if (buf.readUInt32BE(0) !== PACKET_MAGIC) return bad('magic');
  if (buf[4] !== PACKET_VERSION) return bad('version');
  if (nativeCrcOk !== null ? !nativeCrcOk(buf) : crc32c(buf.subarray(0, buf.length - PACKET_TRAILER_SIZE)) !== buf.readUInt32BE(buf.length - PACKET_TRAILER_SIZE)) return bad('crc');
  const flags = buf.readUInt16BE(6);
  if (flags === FLAG_PROTECTED && SEALABLE_TYPES.has(buf[5]!)) return bad('protected');
  return flags === 0 ? parsePacket(buf) : bad('malformed');
}

/** The packet in `buf`, whose length, magic, version and integrity are known good and whose flags are 0. */
function parsePacket(buf: Buffer): Decoded {
  const end = buf.length - PACKET_TRAILER_SIZE;
  const type = TYPE_NAME.get(buf[5]!);
  if (type === undefined) return bad('malformed');
  const pn = readU64(buf, 16);
  if (pn < 0) return bad('malformed');
  const session = buf.readBigUInt64BE(8);
  const at = PACKET_HEADER_SIZE;
  const size = end - at;
  let body: PacketBody;
  switch (type) {
    case 'initial': {
      if (size < 6) return bad('malformed');
      const n = buf.readUInt16BE(at + 4);
      if (n > MAX_COOKIE_BYTES || size !== 6 + n) return bad('malformed');
      body = { type, datagramSize: buf.readUInt32BE(at), cookie: buf.subarray(at + 6, at + 6 + n) };
      break;
    }
    case 'retry': {
      if (size < 2) return bad('malformed');
      const n = buf.readUInt16BE(at);
      if (n > MAX_COOKIE_BYTES || size !== 2 + n) return bad('malformed');
      body = { type, cookie: buf.subarray(at + 2, at + 2 + n) };
      break;
    }
    case 'ready':
      if (size !== 8) return bad('malformed');
      body = { type, window: buf.readUInt32BE(at), datagramSize: buf.readUInt32BE(at + 4) };
      break;
    case 'stream': {
      if (size < 8) return bad('malformed');
      const offset = readU64(buf, at);
      if (offset < 0) return bad('malformed');
      body = { type, offset, bytes: buf.subarray(at + 8, end) };
      break;
    }
    case 'data': {
      if (size < DATA_PACKET_FIELDS) return bad('malformed');
      const seq = readU64(buf, at);
      const chunk = readU64(buf, at + 12);
      if (seq < 0 || chunk < 0) return bad('malformed');
      body = { type, seq, index: buf.readUInt32BE(at + 8), chunk, bytes: buf.subarray(at + DATA_PACKET_FIELDS, end) };
      break;
    }
    case 'ack': {
      if (size < 22) return bad('malformed');
      const largest = readU64(buf, at);
      const maxData = readU64(buf, at + 12);
      const count = buf.readUInt16BE(at + 20);
      if (largest < 0 || maxData < 0 || count === 0 || count > MAX_ACK_RANGES || size !== 22 + 8 * count) return bad('malformed');
      const ranges: PnRange[] = [];
      let below = largest + 1;
      for (let i = 0, p = at + 22; i < count; i++, p += 8) {
        const gap = buf.readUInt32BE(p);
        const length = buf.readUInt32BE(p + 4);
        const rangeEnd = below - gap - 1;
        const start = rangeEnd - length + 1;
        // The first range must end at `largest`; every range is non-empty and inside 0..largest.
        if (length === 0 || start < 0 || (i === 0 && gap !== 0) || (i > 0 && gap === 0)) return bad('malformed');
        ranges.push({ start, end: rangeEnd });
        below = start;
      }
      body = { type, largest, ackDelayMicros: buf.readUInt32BE(at + 8), maxData, ranges };
      break;
    }
    case 'ping':
      if (size !== 0) return bad('malformed');
      body = { type };
      break;
    case 'close': {
      if (size < 6) return bad('malformed');
      const n = buf.readUInt16BE(at + 4);
      if (size !== 6 + n || n > MAX_CLOSE_MESSAGE * 4) return bad('malformed');
      let message: string;
      try {
        message = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf.subarray(at + 6, end));
      } catch {
        return bad('malformed');
      }
      body = { type, code: buf.readUInt32BE(at), message };
      break;
    }
  }
  return { ok: true, packet: { session, pn, body } };
}

/**
 * Seals a clear packet (as encodePacket or DataPacketEncoder made it): the same header with
 * FLAG_PROTECTED, the sealed body, the tag, a new CRC.
 */
export function protectPacket(clear: Buffer, dk: DirectionKey): Buffer {
  const bodyEnd = clear.length - PACKET_TRAILER_SIZE;
  const out = Buffer.allocUnsafe(clear.length + TAG_SIZE);
  clear.copy(out, 0, 0, PACKET_HEADER_SIZE);
  out.writeUInt16BE(FLAG_PROTECTED, 6);
  const header = out.subarray(0, PACKET_HEADER_SIZE);
  const pn = readU64(clear, 16);
  let at = PACKET_HEADER_SIZE;
  for (const piece of seal(dk, pn, header, [clear.subarray(PACKET_HEADER_SIZE, bodyEnd)])) {
    piece.copy(out, at);
    at += piece.length;
  }
  out.writeUInt32BE(crc32c(out.subarray(0, at)), at);
  return out;
}

/**
 * Opens and decodes a datagram that decodePacket reported as 'protected' (so its CRC, magic,
 * version and type are checked); null when it does not authenticate. The tag vouches for the
 * bytes, so the clear packet gets no CRC of its own: the receiving hot path.
 */
export function openPacket(buf: Buffer, dk: DirectionKey): Decoded | null {
  const clear = openClear(buf, dk);
  return clear === null ? null : parsePacket(clear);
}

/** The clear packet of a protected datagram, with its CRC, as encodePacket made it; null when it does not authenticate. */
export function unprotectPacket(buf: Buffer, dk: DirectionKey): Buffer | null {
  const clear = openClear(buf, dk);
  if (clear === null) return null;
  const end = clear.length - PACKET_TRAILER_SIZE;
  clear.writeUInt32BE(crc32c(clear.subarray(0, end)), end);
  return clear;
}

/** Decrypts into a clear packet: header (flag cleared), body, and a trailer left unwritten. */
function openClear(buf: Buffer, dk: DirectionKey): Buffer | null {
  const tagEnd = buf.length - PACKET_TRAILER_SIZE;
  const bodyEnd = tagEnd - TAG_SIZE;
  if (bodyEnd < PACKET_HEADER_SIZE) return null;
  const pn = readU64(buf, 16);
  if (pn < 0) return null;
  const header = buf.subarray(0, PACKET_HEADER_SIZE);
  const plain = open(dk, pn, header, [buf.subarray(PACKET_HEADER_SIZE, bodyEnd)], buf.subarray(bodyEnd, tagEnd));
  if (plain === null) return null;
  const out = Buffer.allocUnsafe(bodyEnd + PACKET_TRAILER_SIZE);
  buf.copy(out, 0, 0, PACKET_HEADER_SIZE);
  out.writeUInt16BE(0, 6);
  let at = PACKET_HEADER_SIZE;
  for (const piece of plain) {
    piece.copy(out, at);
    at += piece.length;
  }
  return out;
}
