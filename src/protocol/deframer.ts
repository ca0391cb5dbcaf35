/**
 * Incremental deframer for byte streams (TCP): bytes go in as they arrive, whole checked
 * frames come out. Two states: waiting for a header, then waiting for the body the header
 * announced. The header's length is checked against the type's limit before the body is
 * gathered, so a hostile length never causes an allocation.
 *
 * A DATA frame's bytes are not copied together: its `data` is the list of views of the
 * buffers they arrived in. Copying 1 MiB chunks out of 64 KiB socket reads into fresh
 * buffers cost the receiver more CPU (page faults, munmap) than hashing them.
 */
import { HEADER_SIZE, TRAILER_SIZE } from './constants.js';
import { decodeChecked, decodeDataPieces, parseHeader, type DecodedFrame, type FrameHeader } from './codec.js';
import type { SockxferError } from '../errors.js';

/** Reads smaller than this are copied into a shared scratch buffer instead of kept as pieces. */
const SMALL_READ = 16 * 1024;
const SCRATCH_SIZE = 64 * 1024;

export class StreamDeframer {
  /** Buffered bytes as views, oldest first; `pieces[first]` is the next byte's piece. */
  private pieces: Buffer[] = [];
  private first = 0;
  private buffered = 0;
  /**
   * Small reads are appended to a scratch buffer, so a peer that trickles bytes one at a time
   * costs one piece per 64 KiB, not one per byte. `extendable` is true while the last piece is
   * the scratch view that the next small read may grow.
   */
  private scratch: Buffer | null = null;
  private scratchStart = 0;
  private scratchEnd = 0;
  private extendable = false;
  private header: FrameHeader | null = null;
  private failure: SockxferError | null = null;

  /** `maxData`: the largest DATA chunk this side accepts (defaults to the protocol maximum). */
  constructor(private maxData?: number) {}

  /** Lowers or raises the DATA limit, e.g. once the chunk size of a transfer is agreed. */
  setMaxData(maxData: number): void {
    this.maxData = maxData;
  }

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True when no partial frame is pending (a clean place for the stream to end). */
  get idle(): boolean {
    return this.buffered === 0;
  }

  /** The error that stopped the deframer, or null while it is healthy. */
  get error(): SockxferError | null {
    return this.failure;
  }

  /**
   * Appends bytes and returns every frame they complete, in order. Malformed input throws a
   * SockxferError, unless whole frames came before it in this call: those are returned, and
   * `error` says what followed. Either way, further input is refused with the same error.
   */
  push(chunk: Buffer): DecodedFrame[] {
    if (this.failure) throw this.failure;
    this.append(chunk);
    const out: DecodedFrame[] = [];
    try {
      for (;;) {
        if (this.header === null) {
          if (this.buffered < HEADER_SIZE) break;
          this.header = parseHeader(this.peek(HEADER_SIZE), this.maxData);
        }
        const size = HEADER_SIZE + this.header.bodyLength + TRAILER_SIZE;
        if (this.buffered < size) break;
        const header = this.header;
        this.header = null;
        // DATA stays in the pieces it arrived in (no copy of the chunk); other frames are small.
        const frame = header.type === 'data' ? decodeDataPieces(this.takePieces(size), header) : decodeChecked(this.take(size), header);
        out.push({ frame, session: header.session, size });
      }
    } catch (err) {
      this.failure = err as SockxferError;
      this.pieces = [];
      this.first = 0;
      this.buffered = 0;
      if (out.length === 0) throw err;
    }
    return out;
  }

  private append(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    this.buffered += n;
    if (n >= SMALL_READ) {
      this.pieces.push(chunk);
      this.extendable = false;
      return;
    }
    if (this.extendable && this.scratch!.length - this.scratchEnd >= n) {
      chunk.copy(this.scratch!, this.scratchEnd);
      this.scratchEnd += n;
      this.pieces[this.pieces.length - 1] = this.scratch!.subarray(this.scratchStart, this.scratchEnd);
      return;
    }
    if (this.scratch === null || this.scratch.length - this.scratchEnd < n) {
      this.scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
      this.scratchEnd = 0;
    }
    this.scratchStart = this.scratchEnd;
    chunk.copy(this.scratch, this.scratchEnd);
    this.scratchEnd += n;
    this.pieces.push(this.scratch.subarray(this.scratchStart, this.scratchEnd));
    this.extendable = true;
  }

  /** Drops consumed pieces from the front once in a while, so consumption stays O(1). */
  private compact(): void {
    if (this.first === this.pieces.length) {
      this.pieces = [];
      this.first = 0;
      this.extendable = false;
    } else if (this.first > 64) {
      this.pieces = this.pieces.slice(this.first);
      this.first = 0;
    }
  }

  /** The first n buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    const head = this.pieces[this.first]!;
    if (head.length >= n) return head.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    for (let i = this.first, filled = 0; filled < n; i++) {
      filled += this.pieces[i]!.copy(out, filled, 0, Math.min(this.pieces[i]!.length, n - filled));
    }
    return out;
  }

  /** Removes and returns the first n buffered bytes as views of the pieces they sit in. */
  private takePieces(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const piece = this.pieces[this.first]!;
      if (piece.length <= left) {
        out.push(piece);
        this.first++;
        left -= piece.length;
      } else {
        out.push(piece.subarray(0, left));
        this.pieces[this.first] = piece.subarray(left);
        // The scratch view just lost its front: it can no longer be extended in place.
        if (this.first === this.pieces.length - 1) this.extendable = false;
        left = 0;
      }
    }
    this.buffered -= n;
    this.compact();
    return out;
  }

  /** Removes and returns the first n buffered bytes in one buffer (a view when they sit in one piece). */
  private take(n: number): Buffer {
    const parts = this.takePieces(n);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}
