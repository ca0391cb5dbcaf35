/**
 * The typed frames of a transfer and the encoding of their bodies.
 *
 *   sender                            receiver
 *   HELLO (versions, software)     →
 *                                  ←  WELCOME (chosen version)  | ERROR
 *   OFFER… (entries: files, folders, streams) →
 *                                  ←  ACCEPT… (per entry: send with ranges held / check / refuse) | REFUSE
 *   per file, pipelined (no round trip between files):
 *   DATA (entry, chunk, bytes)…    →
 *   END (entry, size, hash)        →
 *                                  ←  VERDICT (entry: committed, up to date, or why not)
 *                                  ←  VERDICT (WHOLE_TRANSFER): every entry answered, folders finished
 *   ERROR (code, message) may come from either side at any point and ends the session.
 */
import {
  HASH_ALGORITHMS,
  MAX_ACCEPT_RANGES,
  MAX_ENTRY_MESSAGE_BYTES,
  MAX_AUTH_FIELD_BYTES,
  MAX_HASH_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_WIRE_NAME_BYTES,
  MAX_OFFER_ENTRIES,
  MAX_SOFTWARE_BYTES,
  type HashAlgorithm,
} from './constants.js';
import { SockxferError } from '../errors.js';
import { WireReader, WireWriter } from './wire.js';

export interface HelloFrame {
  type: 'hello';
  minVersion: number;
  maxVersion: number;
  /** Capability bits; none are defined yet, unknown bits are ignored. */
  capabilities: number;
  software: string;
}

export interface WelcomeFrame {
  type: 'welcome';
  version: number;
  capabilities: number;
  software: string;
}

/** A stream is data of unknown length (standard input): its size is known only at its END. */
export const ENTRY_KIND = { file: 0, directory: 1, stream: 2 } as const;
export type EntryKind = keyof typeof ENTRY_KIND;

/** One file, folder or stream of an offer. */
export interface OfferEntry {
  /** Index of this entry in the whole transfer; DATA, END and VERDICT refer to it. */
  index: number;
  kind: EntryKind;
  /** Relative path, components separated by "/". */
  name: string;
  /** Bytes (0 for folders and streams). */
  size: number;
  /** Permission bits (0o777 and below). */
  mode: number;
  mtimeMs: number;
}

export interface OfferFrame {
  type: 'offer';
  chunkSize: number;
  hash: HashAlgorithm;
  /** Entries in the whole transfer, across all its OFFER frames. */
  fileCount: number;
  totalBytes: number;
  entries: OfferEntry[];
  /** More OFFER frames of this transfer follow (header flag). */
  more: boolean;
}

/**
 * What the receiver wants of one offered entry:
 * - send: send the data (but for the chunk ranges in `have`, which the receiver holds from an
 *   interrupted earlier transfer), then END;
 * - check: a file of this size is already in place, with hash `digest`. Send END only (no data):
 *   the same hash makes the entry up to date, another one is refused (`code`, e.g. E_EXISTS);
 * - update: as check, but when the hashes differ send the data, which replaces or joins it;
 * - refuse: not wanted (`code` and `message` say why); send nothing for it.
 * Folders are answered with send (created) or refuse.
 */
export const ACCEPT_ACTION = { send: 0, refuse: 1, check: 2, update: 3 } as const;
export type AcceptAction = keyof typeof ACCEPT_ACTION;

export interface AcceptEntry {
  index: number;
  action: AcceptAction;
  /** Wire error code: why refused (refuse), or what a differing file is refused with (check). 0 otherwise. */
  code: number;
  message: string;
  /** check, update: the hash of the file in place; empty otherwise. */
  digest: Buffer;
  /** send: chunk ranges [start, end) the receiver already holds; the sender sends the rest. */
  have: Array<[number, number]>;
}

export interface AcceptFrame {
  type: 'accept';
  entries: AcceptEntry[];
  /** More ACCEPT frames of this transfer follow (header flag). */
  more: boolean;
}

/** `index` of a REFUSE or VERDICT that concerns the whole transfer rather than one file. */
export const WHOLE_TRANSFER = 0xffffffff;

export interface RefuseFrame {
  type: 'refuse';
  code: number;
  index: number;
  message: string;
}

export interface DataFrame {
  type: 'data';
  index: number;
  chunk: number;
  /**
   * The chunk's bytes, in one or more pieces: the stream deframer hands out views of the
   * socket's own read buffers instead of copying a chunk together (see deframer.ts).
   */
  data: Buffer[];
  /**
   * Set when the transport lent the bytes from a pool (UDP's batched receive): call it once no
   * reference to them remains (the chunk is written, or dropped), and the memory is reused.
   * Never call it while something still holds the bytes; not calling it only costs the reuse.
   */
  release?: () => void;
}

/** Total bytes of a DATA frame's pieces. */
export function dataLength(frame: DataFrame): number {
  let n = 0;
  for (const piece of frame.data) n += piece.length;
  return n;
}

export interface EndFrame {
  type: 'end';
  index: number;
  /** Bytes of the entry: the offered size for a file, the length for a stream. */
  size: number;
  hash: HashAlgorithm;
  digest: Buffer;
  /** The sender gives the entry up (header flag): its source changed or vanished. */
  abandoned: boolean;
}

export const VERDICT_STATUS = { committed: 0, failed: 1, 'up-to-date': 2 } as const;
export type VerdictStatus = keyof typeof VERDICT_STATUS;

export interface VerdictFrame {
  type: 'verdict';
  /** The entry, or WHOLE_TRANSFER: every entry is answered and the folders are finished. */
  index: number;
  /** committed: written and moved into place; up-to-date: an identical file was already there. */
  status: VerdictStatus;
  /** Wire error code when failed, 0 otherwise. */
  code: number;
  hash: HashAlgorithm;
  /** The receiver's own whole-file hash of what it wrote (or holds, when up to date). */
  digest: Buffer;
  message: string;
  /** Where the entry is, relative to the receiver's folder (with --keep-both, a new name); empty when failed. */
  path: string;
}

/**
 * One step of the key handshake (see secure.ts): the receiver's challenge (nonce only), the
 * sender's answer (nonce and proof), the receiver's proof (proof only).
 */
export interface AuthFrame {
  type: 'auth';
  nonce: Buffer;
  proof: Buffer;
}

export interface ErrorFrame {
  type: 'error';
  code: number;
  message: string;
}

export type Frame =
  | HelloFrame
  | WelcomeFrame
  | OfferFrame
  | AcceptFrame
  | RefuseFrame
  | DataFrame
  | EndFrame
  | VerdictFrame
  | ErrorFrame
  | AuthFrame;

const HASH_BY_WIRE = new Map<number, HashAlgorithm>(
  (Object.keys(HASH_ALGORITHMS) as HashAlgorithm[]).map((h) => [HASH_ALGORITHMS[h], h]),
);
const KIND_BY_WIRE = new Map<number, EntryKind>(
  (Object.keys(ENTRY_KIND) as EntryKind[]).map((k) => [ENTRY_KIND[k], k]),
);
const ACTION_BY_WIRE = new Map<number, AcceptAction>(
  (Object.keys(ACCEPT_ACTION) as AcceptAction[]).map((a) => [ACCEPT_ACTION[a], a]),
);
const STATUS_BY_WIRE = new Map<number, VerdictStatus>(
  (Object.keys(VERDICT_STATUS) as VerdictStatus[]).map((a) => [VERDICT_STATUS[a], a]),
);

function lookup<T>(map: Map<number, T>, v: number, what: string): T {
  const found = map.get(v);
  if (found === undefined) throw new SockxferError('E_PROTOCOL', `malformed frame: unknown ${what} ${v}`);
  return found;
}

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes on a character boundary (with "..." when cut), so
 * that a message always fits its frame field however many multi-byte characters it holds.
 */
export function fitMessage(text: string, maxBytes: number = MAX_MESSAGE_BYTES): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes - 3) break;
    out += ch;
    bytes += n;
  }
  return `${out}...`;
}

/** Encodes the body of any frame but DATA (whose bytes are sent without a copy, see codec.ts). */
export function encodeBody(frame: Exclude<Frame, DataFrame>): Buffer {
  const w = new WireWriter();
  switch (frame.type) {
    case 'hello':
      return w.u8(frame.minVersion).u8(frame.maxVersion).u32(frame.capabilities).str16(frame.software, MAX_SOFTWARE_BYTES).toBuffer();
    case 'welcome':
      return w.u8(frame.version).u32(frame.capabilities).str16(frame.software, MAX_SOFTWARE_BYTES).toBuffer();
    case 'offer': {
      if (frame.entries.length > MAX_OFFER_ENTRIES) throw new RangeError(`an OFFER frame holds at most ${MAX_OFFER_ENTRIES} entries`);
      w.u32(frame.chunkSize).u8(HASH_ALGORITHMS[frame.hash]).u32(frame.fileCount).u64(frame.totalBytes).u16(frame.entries.length);
      for (const e of frame.entries) {
        w.u32(e.index).u8(ENTRY_KIND[e.kind]).u64(e.size).u32(e.mode).u64(e.mtimeMs).str16(e.name, MAX_WIRE_NAME_BYTES);
      }
      return w.toBuffer();
    }
    case 'accept': {
      if (frame.entries.length > MAX_OFFER_ENTRIES) throw new RangeError(`an ACCEPT frame holds at most ${MAX_OFFER_ENTRIES} entries`);
      w.u16(frame.entries.length);
      for (const e of frame.entries) {
        if (e.have.length > MAX_ACCEPT_RANGES) throw new RangeError(`at most ${MAX_ACCEPT_RANGES} ranges per entry`);
        w.u32(e.index).u8(ACCEPT_ACTION[e.action]).u16(e.code).str16(e.message, MAX_ENTRY_MESSAGE_BYTES).bytes8(e.digest, MAX_HASH_BYTES).u16(e.have.length);
        for (const [start, end] of e.have) w.u64(start).u64(end);
      }
      return w.toBuffer();
    }
    case 'refuse':
      return w.u16(frame.code).u32(frame.index).str16(frame.message, MAX_MESSAGE_BYTES).toBuffer();
    case 'end':
      return w.u32(frame.index).u64(frame.size).u8(HASH_ALGORITHMS[frame.hash]).bytes8(frame.digest, MAX_HASH_BYTES).toBuffer();
    case 'verdict':
      return w
        .u32(frame.index)
        .u8(VERDICT_STATUS[frame.status])
        .u16(frame.code)
        .u8(HASH_ALGORITHMS[frame.hash])
        .bytes8(frame.digest, MAX_HASH_BYTES)
        .str16(frame.message, MAX_MESSAGE_BYTES)
        .str16(frame.path, MAX_WIRE_NAME_BYTES)
        .toBuffer();
    case 'error':
      return w.u16(frame.code).str16(frame.message, MAX_MESSAGE_BYTES).toBuffer();
    case 'auth':
      return w.bytes8(frame.nonce, MAX_AUTH_FIELD_BYTES).bytes8(frame.proof, MAX_AUTH_FIELD_BYTES).toBuffer();
  }
}

/** Decodes a body whose type and length the header already vouched for. */
export function decodeBody(type: Frame['type'], flags: number, body: Buffer): Frame {
  const r = new WireReader(body);
  let frame: Frame;
  switch (type) {
    case 'hello':
      frame = { type, minVersion: r.u8('min version'), maxVersion: r.u8('max version'), capabilities: r.u32('capabilities'), software: r.str16('software', MAX_SOFTWARE_BYTES) };
      break;
    case 'welcome':
      frame = { type, version: r.u8('version'), capabilities: r.u32('capabilities'), software: r.str16('software', MAX_SOFTWARE_BYTES) };
      break;
    case 'offer': {
      const chunkSize = r.u32('chunk size');
      const hash = lookup(HASH_BY_WIRE, r.u8('hash algorithm'), 'hash algorithm');
      const fileCount = r.u32('file count');
      const totalBytes = r.u64('total bytes');
      const n = r.u16('entry count');
      if (n > MAX_OFFER_ENTRIES) throw new SockxferError('E_PROTOCOL', `malformed frame: ${n} offer entries, the limit is ${MAX_OFFER_ENTRIES}`);
      const entries: OfferEntry[] = [];
      for (let i = 0; i < n; i++) {
        entries.push({
          index: r.u32('entry index'),
          kind: lookup(KIND_BY_WIRE, r.u8('entry kind'), 'entry kind'),
          size: r.u64('file size'),
          mode: r.u32('mode'),
          mtimeMs: r.u64('mtime'),
          name: r.str16('name', MAX_WIRE_NAME_BYTES),
        });
      }
      frame = { type, chunkSize, hash, fileCount, totalBytes, entries, more: (flags & 1) !== 0 };
      break;
    }
    case 'accept': {
      const n = r.u16('entry count');
      if (n > MAX_OFFER_ENTRIES) throw new SockxferError('E_PROTOCOL', `malformed frame: ${n} accept entries, the limit is ${MAX_OFFER_ENTRIES}`);
      const entries: AcceptEntry[] = [];
      for (let i = 0; i < n; i++) {
        const index = r.u32('entry index');
        const action = lookup(ACTION_BY_WIRE, r.u8('action'), 'accept action');
        const code = r.u16('code');
        const message = r.str16('message', MAX_ENTRY_MESSAGE_BYTES);
        const digest = r.bytes8('digest', MAX_HASH_BYTES);
        const rangeCount = r.u16('range count');
        if (rangeCount > MAX_ACCEPT_RANGES) throw new SockxferError('E_PROTOCOL', `malformed frame: ${rangeCount} ranges, the limit is ${MAX_ACCEPT_RANGES}`);
        const have: Array<[number, number]> = [];
        for (let j = 0; j < rangeCount; j++) have.push([r.u64('range start'), r.u64('range end')]);
        entries.push({ index, action, code, message, digest, have });
      }
      frame = { type, entries, more: (flags & 1) !== 0 };
      break;
    }
    case 'refuse':
      frame = { type, code: r.u16('code'), index: r.u32('index'), message: r.str16('message', MAX_MESSAGE_BYTES) };
      break;
    case 'data':
      frame = { type, index: r.u32('file index'), chunk: r.u64('chunk index'), data: [r.rest()] };
      break;
    case 'end':
      frame = {
        type,
        index: r.u32('file index'),
        size: r.u64('size'),
        hash: lookup(HASH_BY_WIRE, r.u8('hash algorithm'), 'hash algorithm'),
        digest: r.bytes8('digest', MAX_HASH_BYTES),
        abandoned: (flags & 1) !== 0,
      };
      break;
    case 'verdict': {
      const index = r.u32('file index');
      const status = lookup(STATUS_BY_WIRE, r.u8('status'), 'verdict status');
      frame = {
        type,
        index,
        status,
        code: r.u16('code'),
        hash: lookup(HASH_BY_WIRE, r.u8('hash algorithm'), 'hash algorithm'),
        digest: r.bytes8('digest', MAX_HASH_BYTES),
        message: r.str16('message', MAX_MESSAGE_BYTES),
        path: r.str16('path', MAX_WIRE_NAME_BYTES),
      };
      break;
    }
    case 'error':
      frame = { type, code: r.u16('code'), message: r.str16('message', MAX_MESSAGE_BYTES) };
      break;
    case 'auth':
      frame = { type, nonce: r.bytes8('nonce', MAX_AUTH_FIELD_BYTES), proof: r.bytes8('proof', MAX_AUTH_FIELD_BYTES) };
      break;
  }
  r.end(type);
  return frame;
}
