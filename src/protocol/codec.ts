/**
 * Frame layout (all integers big-endian):
 *
 *   0  u32  magic "SXFR"
 *   4  u8   protocol version
 *   5  u8   frame type
 *   6  u16  flags
 *   8  u64  session id
 *   16 u32  body length            (checked against the type's limit before any allocation)
 *   20 …    body
 *   …  u32  CRC32C of header and body
 *
 * A DATA frame's trailer is the chunk's CRC32C: it covers the header, the file index, the chunk
 * index and the bytes, so a chunk is checked in the same single pass that checks the frame.
 */
import {
  DATA_FIELDS_SIZE,
  FLAG_ABANDONED,
  FLAG_MORE,
  FRAME_TYPE,
  FRAME_TYPE_NAME,
  HEADER_SIZE,
  MAGIC,
  MAX_CHUNK_SIZE,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  TRAILER_SIZE,
  maxBodySize,
  type FrameTypeName,
} from './constants.js';
import { crc32c } from './crc32c.js';
import { dataLength, decodeBody, encodeBody, type DataFrame, type Frame } from './frames.js';
import { SockxferError } from '../errors.js';

export interface FrameHeader {
  version: number;
  type: FrameTypeName;
  flags: number;
  session: bigint;
  bodyLength: number;
}

export interface DecodedFrame {
  frame: Frame;
  session: bigint;
  /** Bytes the frame took on the wire, header and trailer included. */
  size: number;
}

/** Which header flags each type may carry; anything else is refused so every frame has one meaning. */
const ALLOWED_FLAGS: Partial<Record<FrameTypeName, number>> = { offer: FLAG_MORE, accept: FLAG_MORE, end: FLAG_ABANDONED };

function writeHeader(buf: Buffer, type: FrameTypeName, flags: number, session: bigint, bodyLength: number): void {
  buf.writeUInt32BE(MAGIC, 0);
  buf.writeUInt8(PROTOCOL_VERSION, 4);
  buf.writeUInt8(FRAME_TYPE[type], 5);
  buf.writeUInt16BE(flags, 6);
  buf.writeBigUInt64BE(session, 8);
  buf.writeUInt32BE(bodyLength, 16);
}

/**
 * Parses and checks the fixed header at the start of `buf` (which holds at least HEADER_SIZE bytes):
 * magic, version, type, flags and the body length against the type's hard limit.
 * `maxData` lowers the limit for DATA bodies (a receiver knows the chunk size it accepted).
 */
export function parseHeader(buf: Buffer, maxData?: number): FrameHeader {
  if (buf.readUInt32BE(0) !== MAGIC) {
    throw new SockxferError('E_PROTOCOL', 'the peer does not speak sockxfer (bad magic)');
  }
  const version = buf.readUInt8(4);
  if (version < MIN_PROTOCOL_VERSION || version > MAX_PROTOCOL_VERSION) {
    throw new SockxferError(
      'E_VERSION',
      `the peer speaks sockxfer protocol version ${version}; this sockxfer speaks ${MIN_PROTOCOL_VERSION === MAX_PROTOCOL_VERSION ? MIN_PROTOCOL_VERSION : `${MIN_PROTOCOL_VERSION}-${MAX_PROTOCOL_VERSION}`}`,
    );
  }
  const typeNumber = buf.readUInt8(5);
  const type = FRAME_TYPE_NAME.get(typeNumber);
  if (type === undefined) throw new SockxferError('E_PROTOCOL', `unknown frame type ${typeNumber}`);
  const flags = buf.readUInt16BE(6);
  if ((flags & ~(ALLOWED_FLAGS[type] ?? 0)) !== 0) {
    throw new SockxferError('E_PROTOCOL', `unknown flags 0x${flags.toString(16)} on a ${type} frame`);
  }
  const bodyLength = buf.readUInt32BE(16);
  // maxData may lower the DATA limit, never raise it past the protocol's.
  const limit = type === 'data' && maxData !== undefined ? Math.min(DATA_FIELDS_SIZE + maxData, maxBodySize(type)) : maxBodySize(type);
  if (bodyLength > limit) {
    throw new SockxferError('E_PROTOCOL', `${type} frame of ${bodyLength} bytes is over the limit of ${limit}`);
  }
  if (type === 'data' && bodyLength < DATA_FIELDS_SIZE) {
    throw new SockxferError('E_PROTOCOL', `data frame of ${bodyLength} bytes is too short`);
  }
  return { version, type, flags, session: buf.readBigUInt64BE(8), bodyLength };
}

/**
 * Encodes a frame as buffers to write in order (one writev). A DATA frame's bytes are
 * passed through untouched: [header+fields, ...data pieces, trailer].
 */
export function encodeFrame(frame: Frame, session: bigint): Buffer[] {
  if (frame.type === 'data') return encodeData(frame, session);
  const body = encodeBody(frame);
  const flags = ((frame.type === 'offer' || frame.type === 'accept') && frame.more ? FLAG_MORE : 0) | (frame.type === 'end' && frame.abandoned ? FLAG_ABANDONED : 0);
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.length + TRAILER_SIZE);
  writeHeader(out, frame.type, flags, session, body.length);
  body.copy(out, HEADER_SIZE);
  out.writeUInt32BE(crc32c(out.subarray(0, HEADER_SIZE + body.length)), HEADER_SIZE + body.length);
  return [out];
}

function encodeData(frame: DataFrame, session: bigint): Buffer[] {
  // The encoder refuses what the decoder would refuse, so a bug here fails at the sender.
  const length = dataLength(frame);
  if (length > MAX_CHUNK_SIZE) throw new RangeError(`a chunk of ${length} bytes is over the ${MAX_CHUNK_SIZE}-byte limit`);
  if (!Number.isSafeInteger(frame.chunk) || frame.chunk < 0) throw new RangeError(`chunk index out of range: ${frame.chunk}`);
  const head = Buffer.allocUnsafe(HEADER_SIZE + DATA_FIELDS_SIZE);
  writeHeader(head, 'data', 0, session, DATA_FIELDS_SIZE + length);
  head.writeUInt32BE(frame.index, HEADER_SIZE);
  head.writeUInt32BE(Math.floor(frame.chunk / 0x1_0000_0000), HEADER_SIZE + 4);
  head.writeUInt32BE(frame.chunk % 0x1_0000_0000, HEADER_SIZE + 8);
  let crc = crc32c(head);
  for (const piece of frame.data) crc = crc32c(piece, crc);
  const trailer = Buffer.allocUnsafe(TRAILER_SIZE);
  trailer.writeUInt32BE(crc);
  return [head, ...frame.data, trailer];
}

/** Encodes a frame into one buffer (for datagrams and tests). */
export function encodeFrameToBuffer(frame: Frame, session: bigint): Buffer {
  const parts = encodeFrame(frame, session);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * Decodes the frame at the start of `buf`. Returns null when `buf` holds only part of a frame
 * ("need more"); throws SockxferError for anything malformed. Bodies are views into `buf`.
 */
export function decodeFrame(buf: Buffer, maxData?: number): DecodedFrame | null {
  if (buf.length < HEADER_SIZE) return null;
  const header = parseHeader(buf, maxData);
  const size = HEADER_SIZE + header.bodyLength + TRAILER_SIZE;
  if (buf.length < size) return null;
  return { frame: decodeChecked(buf.subarray(0, size), header), session: header.session, size };
}

/** Checks the CRC of a whole frame (`buf` is exactly one frame) and decodes its body. */
export function decodeChecked(buf: Buffer, header: FrameHeader): Frame {
  const crcAt = HEADER_SIZE + header.bodyLength;
  const expected = buf.readUInt32BE(crcAt);
  const actual = crc32c(buf.subarray(0, crcAt));
  if (actual !== expected) {
    throw new SockxferError(
      'E_CHECKSUM',
      `${header.type} frame failed its CRC32C check (got 0x${actual.toString(16).padStart(8, '0')}, frame says 0x${expected.toString(16).padStart(8, '0')})`,
    );
  }
  return decodeBody(header.type, header.flags, buf.subarray(HEADER_SIZE, crcAt));
}

/**
 * Checks and decodes a DATA frame given as pieces (views of the buffers it arrived in), without
 * copying its bytes: the CRC runs over the pieces in order, and they become the frame's data.
 */
export function decodeDataPieces(pieces: Buffer[], header: FrameHeader): DataFrame {
  const fieldsEnd = HEADER_SIZE + DATA_FIELDS_SIZE;
  const bodyEnd = HEADER_SIZE + header.bodyLength;
  const [head, data, trailer] = splitPieces(pieces, fieldsEnd, bodyEnd);
  const headBuf = head.length === 1 ? head[0]! : Buffer.concat(head);
  const trailerBuf = trailer.length === 1 ? trailer[0]! : Buffer.concat(trailer);
  let crc = crc32c(headBuf);
  for (const piece of data) crc = crc32c(piece, crc);
  const expected = trailerBuf.readUInt32BE(0);
  if (crc !== expected) {
    throw new SockxferError(
      'E_CHECKSUM',
      `data frame failed its CRC32C check (got 0x${crc.toString(16).padStart(8, '0')}, frame says 0x${expected.toString(16).padStart(8, '0')})`,
    );
  }
  const fields = decodeBody('data', header.flags, headBuf.subarray(HEADER_SIZE)) as DataFrame;
  return { ...fields, data };
}

/** Cuts a list of pieces at two byte offsets into three lists of views. */
function splitPieces(pieces: Buffer[], a: number, b: number): [Buffer[], Buffer[], Buffer[]] {
  const out: [Buffer[], Buffer[], Buffer[]] = [[], [], []];
  let at = 0;
  for (const piece of pieces) {
    const end = at + piece.length;
    // Each of the three ranges [0,a), [a,b), [b,∞) takes the part of this piece that falls in it.
    const cuts = [0, a, b, Infinity];
    for (let k = 0; k < 3; k++) {
      const from = Math.max(at, cuts[k]!);
      const to = Math.min(end, cuts[k + 1]!);
      if (to > from) out[k]!.push(piece.subarray(from - at, to - at));
    }
    at = end;
  }
  return out;
}
