/**
 * Valid frames of every type with random field values, encoded by the project's own encoder,
 * plus what a mutator needs to know of the layout (where the length, count and u64 fields are).
 */
import {
  ACCEPT_ACTION,
  DATA_FIELDS_SIZE,
  ENTRY_KIND,
  FLAG_ABANDONED,
  FLAG_MORE,
  FRAME_TYPE,
  HASH_ALGORITHMS,
  HEADER_SIZE,
  MAX_ACCEPT_RANGES,
  MAX_AUTH_FIELD_BYTES,
  MAX_CONTROL_BODY,
  MAX_ENTRY_MESSAGE_BYTES,
  MAX_HASH_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_OFFER_ENTRIES,
  MAX_SOFTWARE_BYTES,
  MAX_WIRE_NAME_BYTES,
  MAGIC,
  PROTOCOL_VERSION,
  TRAILER_SIZE,
  VERDICT_STATUS,
  WHOLE_TRANSFER,
  crc32c,
  encodeFrameToBuffer,
  maxBodySize,
  type AcceptAction,
  type AcceptEntry,
  type EntryKind,
  type Frame,
  type FrameTypeName,
  type HashAlgorithm,
  type OfferEntry,
  type VerdictStatus,
} from '../protocol/index.js';
import type { Rng } from './random.js';
import { session, text, u53, uint } from './values.js';

export const FRAME_TYPES = Object.keys(FRAME_TYPE) as FrameTypeName[];
const HASHES = Object.keys(HASH_ALGORITHMS) as HashAlgorithm[];
const KINDS = Object.keys(ENTRY_KIND) as EntryKind[];
const ACTIONS = Object.keys(ACCEPT_ACTION) as AcceptAction[];
const STATUSES = Object.keys(VERDICT_STATUS) as VerdictStatus[];

/** Each entry of an OFFER costs this many bytes besides its name. */
const OFFER_ENTRY_FIXED = 4 + 1 + 8 + 4 + 8 + 2;
const OFFER_FIXED = 4 + 1 + 4 + 8 + 2;
/** index, action, code, message length, digest length, range count. */
const ACCEPT_ENTRY_FIXED = 4 + 1 + 2 + 2 + 1 + 2;

/** A DATA chunk's length: usually small, rarely big enough (16 KiB and more) for the deframer's no-copy path. */
function chunkLength(rng: Rng): number {
  if (rng.chance(0.002)) return rng.range(16 * 1024, 300 * 1024);
  return rng.length(2048);
}

function offerEntries(rng: Rng): OfferEntry[] {
  const entries: OfferEntry[] = [];
  const count = rng.chance(0.02) ? rng.below(MAX_OFFER_ENTRIES + 1) : rng.below(4);
  let budget = MAX_CONTROL_BODY - OFFER_FIXED;
  for (let i = 0; i < count; i++) {
    const maxName = Math.min(count > 4 ? 32 : MAX_WIRE_NAME_BYTES, budget - OFFER_ENTRY_FIXED);
    if (maxName < 0) break;
    const name = text(rng, rng.chance(0.8) ? Math.min(maxName, 64) : maxName);
    budget -= OFFER_ENTRY_FIXED + Buffer.byteLength(name);
    entries.push({ index: uint(rng, 0xffffffff), kind: rng.chance(0.7) ? 'file' : rng.pick(KINDS), name, size: u53(rng), mode: uint(rng, 0xffffffff), mtimeMs: u53(rng) });
  }
  return entries;
}

function acceptEntries(rng: Rng): AcceptEntry[] {
  const entries: AcceptEntry[] = [];
  const count = rng.chance(0.02) ? rng.below(MAX_OFFER_ENTRIES + 1) : rng.below(4);
  let budget = MAX_CONTROL_BODY - 2;
  for (let i = 0; i < count; i++) {
    const message = text(rng, rng.chance(0.7) ? 16 : MAX_ENTRY_MESSAGE_BYTES);
    const digest = rng.bytes(rng.chance(0.5) ? 0 : rng.length(MAX_HASH_BYTES));
    const fixed = ACCEPT_ENTRY_FIXED + Buffer.byteLength(message) + digest.length;
    if (fixed > budget) break;
    const most = Math.min(MAX_ACCEPT_RANGES, Math.floor((budget - fixed) / 16));
    const ranges = rng.chance(0.005) ? most : Math.min(most, rng.below(5));
    const have: Array<[number, number]> = [];
    for (let j = 0; j < ranges; j++) have.push([u53(rng), u53(rng)]);
    budget -= fixed + 16 * ranges;
    entries.push({ index: uint(rng, 0xffffffff), action: rng.pick(ACTIONS), code: uint(rng, 0xffff), message, digest, have });
  }
  return entries;
}

/** A random frame of the given type; every field within what the encoder and decoder accept. */
export function randomFrame(rng: Rng, type: FrameTypeName): Frame {
  switch (type) {
    case 'hello':
      return { type, minVersion: uint(rng, 255), maxVersion: uint(rng, 255), capabilities: uint(rng, 0xffffffff), software: text(rng, MAX_SOFTWARE_BYTES) };
    case 'welcome':
      return { type, version: uint(rng, 255), capabilities: uint(rng, 0xffffffff), software: text(rng, MAX_SOFTWARE_BYTES) };
    case 'offer':
      return { type, chunkSize: uint(rng, 0xffffffff), hash: rng.pick(HASHES), fileCount: uint(rng, 0xffffffff), totalBytes: u53(rng), entries: offerEntries(rng), more: rng.chance(0.3) };
    case 'accept':
      return { type, entries: acceptEntries(rng), more: rng.chance(0.3) };
    case 'refuse':
      return { type, code: uint(rng, 0xffff), index: rng.chance(0.3) ? WHOLE_TRANSFER : uint(rng, 0xffffffff), message: text(rng, MAX_MESSAGE_BYTES) };
    case 'data': {
      const bytes = rng.cheapBytes(chunkLength(rng));
      // Several pieces sometimes: the encoder must give the same bytes however a chunk is held.
      const pieces: Buffer[] = [];
      for (let at = 0, left = rng.below(3); at < bytes.length || pieces.length === 0; left--) {
        const end = left <= 0 ? bytes.length : at + rng.below(bytes.length - at + 1);
        pieces.push(bytes.subarray(at, end));
        at = end;
      }
      return { type, index: uint(rng, 0xffffffff), chunk: u53(rng), data: pieces };
    }
    case 'end':
      return { type, index: uint(rng, 0xffffffff), size: u53(rng), hash: rng.pick(HASHES), digest: rng.bytes(rng.length(MAX_HASH_BYTES)), abandoned: rng.chance(0.2) };
    case 'verdict': {
      const status = rng.pick(STATUSES);
      return {
        type,
        index: rng.chance(0.2) ? WHOLE_TRANSFER : uint(rng, 0xffffffff),
        status,
        code: status !== 'failed' && rng.chance(0.8) ? 0 : uint(rng, 0xffff),
        hash: rng.pick(HASHES),
        digest: rng.bytes(rng.length(MAX_HASH_BYTES)),
        message: text(rng, MAX_MESSAGE_BYTES),
        path: text(rng, rng.chance(0.9) ? 128 : MAX_WIRE_NAME_BYTES),
      };
    }
    case 'error':
      return { type, code: uint(rng, 0xffff), message: text(rng, MAX_MESSAGE_BYTES) };
    case 'auth':
      return { type, nonce: rng.bytes(rng.length(MAX_AUTH_FIELD_BYTES)), proof: rng.bytes(rng.length(MAX_AUTH_FIELD_BYTES)) };
  }
}

/** A valid encoded frame: `type` when given, else a random one. */
export function validFrame(rng: Rng, type: FrameTypeName = rng.pick(FRAME_TYPES)): { frame: Frame; session: bigint; bytes: Buffer } {
  const frame = randomFrame(rng, type);
  const id = session(rng);
  return { frame, session: id, bytes: encodeFrameToBuffer(frame, id) };
}

/**
 * Offsets of length and count fields in a frame of this type: the header's body length, then
 * the body's own prefixes (for an OFFER and an ACCEPT, those of the first entry).
 */
export function frameLengthFields(type: FrameTypeName): Array<{ at: number; width: 1 | 2 | 4 }> {
  const body = (at: number, width: 1 | 2 | 4) => ({ at: HEADER_SIZE + at, width });
  const fields = [{ at: 16, width: 4 as const }];
  switch (type) {
    case 'hello':
      return [...fields, body(6, 2)];
    case 'welcome':
      return [...fields, body(5, 2)];
    case 'offer':
      return [...fields, body(OFFER_FIXED - 2, 2), body(OFFER_FIXED + OFFER_ENTRY_FIXED - 2, 2)];
    case 'accept':
      return [...fields, body(0, 2), body(2 + 4 + 1 + 2, 2)];
    case 'refuse':
      return [...fields, body(6, 2)];
    case 'data':
      return fields;
    case 'end':
      return [...fields, body(4, 4), body(13, 1)];
    case 'verdict':
      return [...fields, body(8, 1)];
    case 'error':
      return [...fields, body(2, 2)];
    case 'auth':
      return [...fields, body(0, 1)];
  }
}

/** Offsets of the u64 fields a frame of this type has at fixed places (for an OFFER, those of the first entry). */
export function frameU64Fields(type: FrameTypeName): number[] {
  switch (type) {
    case 'offer':
      return [9, OFFER_FIXED + 5, OFFER_FIXED + 17].map((at) => HEADER_SIZE + at);
    case 'data':
    case 'end':
      return [HEADER_SIZE + 4];
    default:
      return [];
  }
}

/** The type named in a frame's header, if the byte is a known type. */
export function frameTypeOf(buf: Buffer): FrameTypeName | undefined {
  return buf.length > 5 ? FRAME_TYPES.find((t) => FRAME_TYPE[t] === buf[5]) : undefined;
}

/** Sets the header's body length to what the buffer holds (so the decoder sees a whole frame). */
export function fixFrameLength(buf: Buffer): void {
  if (buf.length >= HEADER_SIZE + TRAILER_SIZE) buf.writeUInt32BE(buf.length - HEADER_SIZE - TRAILER_SIZE, 16);
}

/** Rewrites the CRC trailer where the header's body length puts it, if the buffer reaches that far. */
export function fixFrameCrc(buf: Buffer): void {
  if (buf.length < HEADER_SIZE) return;
  const crcAt = HEADER_SIZE + buf.readUInt32BE(16);
  if (crcAt + TRAILER_SIZE <= buf.length) buf.writeUInt32BE(crc32c(buf.subarray(0, crcAt)), crcAt);
}

/**
 * A header that passes every header check (magic, version, a known type, allowed flags) and a
 * random body of a length within the type's limit, with a valid CRC most of the time: the body
 * decoders see random bytes.
 */
export function randomBodyFrame(rng: Rng): Buffer {
  const type = rng.pick(FRAME_TYPES);
  const max = Math.min(maxBodySize(type), 512);
  const bodyLength = Math.max(type === 'data' ? DATA_FIELDS_SIZE : 0, rng.length(max));
  const buf = Buffer.alloc(HEADER_SIZE + bodyLength + TRAILER_SIZE);
  buf.writeUInt32BE(MAGIC, 0);
  buf[4] = PROTOCOL_VERSION;
  buf[5] = FRAME_TYPE[type];
  if ((type === 'offer' || type === 'accept' || type === 'end') && rng.chance(0.5)) buf.writeUInt16BE(type === 'end' ? FLAG_ABANDONED : FLAG_MORE, 6);
  buf.writeBigUInt64BE(session(rng), 8);
  buf.writeUInt32BE(bodyLength, 16);
  rng.bytes(bodyLength).copy(buf, HEADER_SIZE);
  // Small counts and lengths sometimes, so the body parsers get past their first field.
  if (rng.chance(0.5)) for (const f of frameLengthFields(type).slice(1)) if (f.at + f.width <= HEADER_SIZE + bodyLength) buf.writeUIntBE(rng.below(8), f.at, f.width);
  if (rng.chance(0.9)) fixFrameCrc(buf);
  return buf;
}
