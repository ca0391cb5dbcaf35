/**
 * Target "codec": decodeFrame (and through it parseHeader, decodeChecked, decodeBody), plus
 * decodeDataPieces on DATA frames cut into pieces.
 *
 * The contract (codec.ts): null means "need more" and only happens while the buffer is shorter
 * than the frame its header announces; anything malformed throws a SockxferError E_PROTOCOL,
 * E_VERSION or E_CHECKSUM. Frame encodings are canonical (fixed header, one meaning per flag,
 * no trailing bytes, exact UTF-8, refused u64s above 2^53-1), so a decoded frame must re-encode
 * to exactly the bytes it came from.
 */
import {
  DATA_FIELDS_SIZE,
  FRAME_TYPE,
  FRAME_TYPE_NAME,
  HEADER_SIZE,
  TRAILER_SIZE,
  crc32c,
  decodeDataPieces,
  decodeFrame,
  encodeFrameToBuffer,
  maxBodySize,
  parseHeader,
  type DecodedFrame,
  type Frame,
  type FrameHeader,
  type FrameTypeName,
} from '../protocol/index.js';
import { SockxferError, type ErrorCode } from '../errors.js';
import type { FuzzInput, FuzzTarget, Verdict } from './engine.js';
import { fixFrameCrc, fixFrameLength, frameLengthFields, frameTypeOf, frameU64Fields, randomBodyFrame, validFrame } from './gen-frames.js';
import { mutate, type WireFormat } from './mutate.js';
import type { Rng } from './random.js';
import { accepted, finding, maybeMaxData, maybeOffset, present, randomBytesInput, rejected } from './shared.js';

/** The codes decodeFrame documents for malformed input. */
export const CODEC_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['E_PROTOCOL', 'E_VERSION', 'E_CHECKSUM']);

export const FRAME_FORMAT: WireFormat = {
  headerSize: HEADER_SIZE,
  trailerSize: TRAILER_SIZE,
  lengthFields: (buf) => frameLengthFields(frameTypeOf(buf) ?? 'data'),
  u64Fields: (buf) => frameU64Fields(frameTypeOf(buf) ?? 'data'),
  typeAt: 5,
  types: Object.values(FRAME_TYPE),
  fixLength: fixFrameLength,
  fixCrc: fixFrameCrc,
};

/** One frame-shaped input: random bytes, a random body behind a good header, a valid frame, or a mutated one. */
export function frameBytes(rng: Rng): { bytes: Buffer; origin: string } {
  const r = rng.below(100);
  if (r < 8) return { bytes: randomBytesInput(rng, false), origin: 'random bytes' };
  if (r < 12) return { bytes: randomBytesInput(rng, true), origin: 'random bytes after magic and version' };
  if (r < 25) return { bytes: randomBodyFrame(rng), origin: 'random body behind a valid header' };
  if (r < 50) {
    const { frame, bytes } = validFrame(rng);
    if (rng.chance(0.2)) return { bytes: Buffer.concat([bytes, rng.bytes(rng.range(1, 32))]), origin: `valid ${frame.type} + junk` };
    return { bytes, origin: `valid ${frame.type}` };
  }
  const { frame, bytes } = validFrame(rng);
  const m = mutate(rng, bytes, FRAME_FORMAT, () => validFrame(rng).bytes);
  return { bytes: m.bytes, origin: `mutated ${frame.type} (${m.ops.join(',')})` };
}

/** Judges a thrown value against the contract: a SockxferError with a documented code, and E_CHECKSUM only for a bad CRC. */
export function judgeThrown(err: unknown, buf: Buffer, maxData: number | undefined): Verdict {
  // Anything that is not a SockxferError goes back to the engine, which reports it with its stack.
  if (!(err instanceof SockxferError)) throw err;
  if (!CODEC_CODES.has(err.code)) return finding(`threw SockxferError ${err.code} (expected one of ${[...CODEC_CODES].join(', ')}): ${err.message}`);
  if (err.code === 'E_CHECKSUM') {
    const header = parseHeader(buf, maxData);
    const crcAt = HEADER_SIZE + header.bodyLength;
    if (crc32c(buf.subarray(0, crcAt)) === buf.readUInt32BE(crcAt)) return finding(`E_CHECKSUM on a frame whose CRC matches: ${err.message}`);
  }
  return rejected(err.code);
}

/**
 * The body limit the protocol documents for a type (constants.ts maxBodySize, lowered for DATA
 * by `maxData`), computed here rather than asked of parseHeader, so a parser that forgets a limit
 * is caught even though it agrees with itself.
 */
export function documentedLimit(type: FrameTypeName, maxData: number | undefined): number {
  return type === 'data' && maxData !== undefined ? Math.min(DATA_FIELDS_SIZE + maxData, maxBodySize(type)) : maxBodySize(type);
}

/** A header the decoder let through must be within its type's documented limit. */
export function headerProblem(header: FrameHeader, maxData: number | undefined): string | null {
  const limit = documentedLimit(header.type, maxData);
  if (header.bodyLength > limit) return `let a ${header.type} header of ${header.bodyLength} bytes through (the limit is ${limit})`;
  if (header.type === 'data' && header.bodyLength < DATA_FIELDS_SIZE) return `let a ${header.bodyLength}-byte data header through`;
  return null;
}

/** Every number in a decoded frame is a field read from the wire: a safe, non-negative integer. */
function numberProblem(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? null : `${path} is ${value}`;
  if (depth > 4 || typeof value !== 'object' || value === null || Buffer.isBuffer(value)) return null;
  for (const [k, v] of Object.entries(value)) {
    const p = numberProblem(v, `${path}.${k}`, depth + 1);
    if (p !== null) return p;
  }
  return null;
}

/** Frames compare by their encoding (canonical): the same bytes, the same frame. */
function encodes(frame: Frame, session: bigint): Buffer | string {
  try {
    return encodeFrameToBuffer(frame, session);
  } catch (err) {
    return `the decoded ${frame.type} frame does not re-encode (${err instanceof Error ? `${err.name}: ${err.message}` : String(err)})`;
  }
}

function checkDecoded(buf: Buffer, d: DecodedFrame, maxData: number | undefined): Verdict {
  const header = parseHeader(buf, maxData);
  const size = HEADER_SIZE + header.bodyLength + TRAILER_SIZE;
  if (d.size !== size || d.size > buf.length) return finding(`decoded size ${d.size}, the header says ${size} (buffer ${buf.length} bytes)`);
  if (d.session !== header.session) return finding(`decoded session ${d.session}, the header says ${header.session}`);
  if (d.frame.type !== FRAME_TYPE_NAME.get(buf[5]!)) return finding(`decoded a ${d.frame.type} frame from a type ${buf[5]} header`);
  if (crc32c(buf.subarray(0, size - TRAILER_SIZE)) !== buf.readUInt32BE(size - TRAILER_SIZE)) return finding('accepted a frame whose CRC does not match');
  const limits = headerProblem(header, maxData);
  if (limits !== null) return finding(limits);
  const numbers = numberProblem(d.frame, 'frame');
  if (numbers !== null) return finding(`decoded a ${d.frame.type} frame whose ${numbers}`);
  const again = encodes(d.frame, d.session);
  if (typeof again === 'string') return finding(again);
  if (!again.equals(buf.subarray(0, size))) return finding(`the decoded ${d.frame.type} frame re-encodes differently: ${again.toString('hex')}`);
  // Every proper prefix of an accepted frame is "need more"; three of them, the cheap way.
  for (const cut of new Set([HEADER_SIZE - 1, HEADER_SIZE, size >> 1, size - 1])) {
    if (cut < 0 || cut >= size) continue;
    const partial = decodeFrame(buf.subarray(0, cut), maxData);
    if (partial !== null) return finding(`a ${cut}-byte prefix of an accepted ${size}-byte frame decoded`);
  }
  if (d.frame.type === 'data') {
    const body = d.frame.data[0];
    if (d.frame.data.length !== 1 || body === undefined || body.buffer !== buf.buffer) return finding('a decoded DATA body is not one view into the input');
    // The same frame through the no-copy path, cut inside the header, the fields, the data and the trailer.
    const cuts = [...new Set([0, 7, HEADER_SIZE + 5, HEADER_SIZE + 12 + ((size - HEADER_SIZE - 16) >> 1), size - 2, size])].filter((c) => c <= size).sort((a, b) => a - b);
    const pieces = cuts.slice(1).map((end, k) => buf.subarray(cuts[k]!, end));
    const viaPieces = encodes(decodeDataPieces(pieces, header), d.session);
    if (typeof viaPieces === 'string') return finding(viaPieces);
    if (!viaPieces.equals(again)) return finding('decodeDataPieces and decodeFrame disagree on a DATA frame');
  }
  return accepted(d.frame.type);
}

/** When decodeFrame says "need more", the header must be fine and the frame longer than the buffer. */
function checkNeedMore(buf: Buffer, maxData: number | undefined): Verdict {
  if (buf.length >= HEADER_SIZE) {
    let header;
    try {
      header = parseHeader(buf, maxData);
    } catch (err) {
      return finding(`decodeFrame said "need more" for a header parseHeader refuses (${err instanceof Error ? err.message : String(err)})`);
    }
    const limits = headerProblem(header, maxData);
    if (limits !== null) return finding(`said "need more" but ${limits}`);
    const size = HEADER_SIZE + header.bodyLength + TRAILER_SIZE;
    if (buf.length >= size) return finding(`decodeFrame said "need more" with ${buf.length} bytes of a ${size}-byte frame`);
  }
  return rejected('need more (null)');
}

/** Checks one input against decodeFrame's contract. */
export function checkCodec(input: FuzzInput): Verdict {
  const buf = present(input);
  let d: DecodedFrame | null;
  try {
    d = decodeFrame(buf, input.maxData);
  } catch (err) {
    return judgeThrown(err, buf, input.maxData);
  }
  return d === null ? checkNeedMore(buf, input.maxData) : checkDecoded(buf, d, input.maxData);
}

export const codecTarget: FuzzTarget = {
  name: 'codec',
  generate(rng) {
    const maxData = maybeMaxData(rng, 0.15);
    const offset = maybeOffset(rng);
    const { bytes, origin } = frameBytes(rng);
    const input: FuzzInput = { bytes, origin };
    if (maxData !== undefined) input.maxData = maxData;
    if (offset !== undefined) input.offset = offset;
    return input;
  },
  check: checkCodec,
};
