/**
 * Target "deframer": StreamDeframer fed a byte stream in pieces (one piece, one byte at a time,
 * small random pieces, or pieces of every size up to 300 KiB so the no-copy path runs).
 *
 * The oracle is decodeFrame run over the whole stream: the deframer must return the same
 * frames (compared by their canonical encoding, after the last push, so a later push that
 * overwrote an earlier frame's bytes shows up) and stop with the same error code, however the
 * stream was cut. Between pushes: bufferedBytes is exactly what was pushed and not returned,
 * `idle` agrees with it, and the deframer never holds a whole frame it could have returned,
 * so it never buffers more than one frame minus a byte (deframer.ts checks the header's length
 * against the type's limit before gathering the body). A failure is sticky: `error` holds
 * what was thrown, and the next push throws the same error.
 */
import {
  FRAME_TYPE,
  HEADER_SIZE,
  StreamDeframer,
  TRAILER_SIZE,
  decodeFrame,
  encodeFrameToBuffer,
  parseHeader,
  type DecodedFrame,
  type FrameTypeName,
} from '../protocol/index.js';
import { SockxferError } from '../errors.js';
import type { FuzzInput, FuzzTarget, Verdict } from './engine.js';
import { validFrame } from './gen-frames.js';
import { mutate } from './mutate.js';
import type { Rng } from './random.js';
import { accepted, finding, maybeMaxData, maybeOffset, present, rejected } from './shared.js';
import { CODEC_CODES, FRAME_FORMAT, documentedLimit, frameBytes, headerProblem } from './target-codec.js';

/** The most bytes a deframer may hold between pushes: the largest frame it accepts, minus one. */
export function maxBuffered(maxData: number | undefined): number {
  let largest = 0;
  for (const type of Object.keys(FRAME_TYPE) as FrameTypeName[]) largest = Math.max(largest, documentedLimit(type, maxData));
  return HEADER_SIZE + largest + TRAILER_SIZE - 1;
}

/** A stream: several valid frames (one of them mutated, sometimes), a cut or junk at the end, or one frame-shaped input. */
function streamBytes(rng: Rng): { bytes: Buffer; origin: string } {
  const r = rng.below(100);
  if (r < 15) {
    const single = frameBytes(rng);
    return { bytes: single.bytes, origin: `single: ${single.origin}` };
  }
  const count = rng.range(1, 6);
  const parts: Buffer[] = [];
  const names: string[] = [];
  const bad = r < 60 ? rng.below(count) : -1;
  for (let i = 0; i < count; i++) {
    const { frame, bytes } = validFrame(rng);
    if (i === bad) {
      const m = mutate(rng, bytes, FRAME_FORMAT, () => validFrame(rng).bytes);
      parts.push(m.bytes);
      names.push(`mutated ${frame.type} (${m.ops.join(',')})`);
    } else {
      parts.push(bytes);
      names.push(frame.type);
    }
  }
  let bytes = Buffer.concat(parts);
  if (r >= 85) {
    if (rng.chance(0.5)) {
      bytes = bytes.subarray(0, rng.below(bytes.length + 1));
      names.push('cut');
    } else {
      bytes = Buffer.concat([bytes, rng.bytes(rng.range(1, 64))]);
      names.push('junk');
    }
  }
  return { bytes, origin: `stream: ${names.join(' ')}` };
}

/** Push lengths covering `n` bytes: whole, byte by byte, small pieces, or pieces of every size. */
function cutStream(rng: Rng, n: number): { pieces: number[]; how: string } {
  const mode = rng.below(100);
  if (mode < 15) return { pieces: [n], how: 'one push' };
  if (mode < 30 && n <= 4096) return { pieces: new Array<number>(n).fill(1), how: 'byte by byte' };
  // Small pushes over a big DATA frame would be thousands of pushes: those get mixed ones.
  const small = mode < 80 && n <= 64 * 1024;
  const pieces: number[] = [];
  // Bounded: every step but the empty pushes (at most n + 16 of those) consumes a byte.
  for (let at = 0, empties = 0; at < n; ) {
    let len: number;
    if (rng.chance(0.05) && empties < 16) {
      len = 0;
      empties++;
    } else if (small) {
      len = rng.range(1, 64);
    } else {
      const r = rng.below(3);
      len = r === 0 ? rng.range(1, 32) : r === 1 ? rng.range(1, 4096) : rng.range(16 * 1024, Math.max(16 * 1024, n));
    }
    len = Math.min(len, n - at);
    pieces.push(len);
    at += len;
  }
  return { pieces, how: small ? 'small pushes' : 'mixed pushes' };
}

interface Reference {
  frames: Array<{ start: number; size: number }>;
  error: SockxferError | null;
}

/** What decodeFrame makes of the whole stream, frame after frame. */
function reference(stream: Buffer, maxData: number | undefined): Reference {
  const frames: Reference['frames'] = [];
  let at = 0;
  // Bounded: each decoded frame is at least HEADER_SIZE + TRAILER_SIZE bytes.
  while (at < stream.length) {
    let d: DecodedFrame | null;
    try {
      d = decodeFrame(stream.subarray(at), maxData);
    } catch (err) {
      if (err instanceof SockxferError && CODEC_CODES.has(err.code)) return { frames, error: err };
      throw err;
    }
    if (d === null) break;
    frames.push({ start: at, size: d.size });
    at += d.size;
  }
  return { frames, error: null };
}

/** Checks one stream against the deframer's contract and the reference decoder. */
export function checkDeframer(input: FuzzInput): Verdict {
  const stream = present(input);
  const pieces = input.pieces ?? [stream.length];
  const ref = reference(stream, input.maxData);
  const deframer = new StreamDeframer(input.maxData);
  const limit = maxBuffered(input.maxData);
  const got: DecodedFrame[] = [];
  let failure: unknown = null;
  let fed = 0;
  let consumed = 0;
  for (const len of pieces) {
    const piece = stream.subarray(fed, fed + len);
    fed += len;
    let out: DecodedFrame[];
    try {
      out = deframer.push(piece);
    } catch (err) {
      failure = err;
      break;
    }
    for (const d of out) {
      got.push(d);
      consumed += d.size;
    }
    if (deframer.error !== null) {
      if (out.length === 0) return finding('push returned nothing and did not throw, yet error is set');
      failure = deframer.error;
      break;
    }
    const held = deframer.bufferedBytes;
    if (held !== fed - consumed) return finding(`bufferedBytes is ${held} after ${fed} bytes in and ${consumed} out`);
    if (deframer.idle !== (held === 0)) return finding(`idle is ${deframer.idle} with ${held} bytes buffered`);
    if (held > limit) return finding(`buffers ${held} bytes, over the ${limit}-byte maximum`);
    if (held >= HEADER_SIZE) {
      const header = parseHeader(stream.subarray(consumed), input.maxData);
      const limits = headerProblem(header, input.maxData);
      if (limits !== null) return finding(`waits for a body: it ${limits}`);
      const size = HEADER_SIZE + header.bodyLength + TRAILER_SIZE;
      if (size <= held) return finding(`holds ${held} bytes, a whole ${size}-byte ${header.type} frame it did not return`);
    }
  }
  if (failure !== null) {
    if (!(failure instanceof SockxferError)) throw failure;
    if (!CODEC_CODES.has(failure.code)) return finding(`threw SockxferError ${failure.code}: ${failure.message}`);
    if (deframer.error !== failure) return finding('error does not hold what push threw');
    let again: unknown = null;
    try {
      deframer.push(Buffer.from([0x53]));
    } catch (err) {
      again = err;
    }
    if (again !== failure) return finding('after a failure, the next push did not throw the same error');
  }
  if (got.length !== ref.frames.length) return finding(`returned ${got.length} frames, decodeFrame finds ${ref.frames.length}`);
  for (let i = 0; i < got.length; i++) {
    const d = got[i]!;
    const r = ref.frames[i]!;
    if (d.size !== r.size) return finding(`frame ${i}: size ${d.size}, decodeFrame says ${r.size}`);
    if (!encodeFrameToBuffer(d.frame, d.session).equals(stream.subarray(r.start, r.start + r.size))) {
      return finding(`frame ${i} (${d.frame.type}) does not re-encode to the bytes it came from`);
    }
  }
  const code = failure instanceof SockxferError ? failure.code : null;
  if (code !== (ref.error?.code ?? null)) return finding(`stopped with ${code ?? 'no error'}, decodeFrame with ${ref.error?.code ?? 'no error'}`);
  if (code !== null) return rejected(code);
  return accepted(deframer.idle ? 'clean end' : 'partial frame at end');
}

export const deframerTarget: FuzzTarget = {
  name: 'deframer',
  generate(rng) {
    const maxData = maybeMaxData(rng, 0.1);
    const offset = maybeOffset(rng);
    const { bytes, origin } = streamBytes(rng);
    const { pieces, how } = cutStream(rng, bytes.length);
    const input: FuzzInput = { bytes, origin: `${origin}; ${how}`, pieces };
    if (maxData !== undefined) input.maxData = maxData;
    if (offset !== undefined) input.offset = offset;
    return input;
  },
  check: checkDeframer,
};
