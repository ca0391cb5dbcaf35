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

export class StreamDeframer {
  private pieces: Buffer[] = [];
  private buffered = 0;
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

  /**
   * Appends bytes and returns every frame they complete, in order. Throws a SockxferError on
   * malformed input; after that the deframer refuses further input with the same error.
   */
  push(chunk: Buffer): DecodedFrame[] {
    if (this.failure) throw this.failure;
    if (chunk.length > 0) {
      this.pieces.push(chunk);
      this.buffered += chunk.length;
    }
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
      this.buffered = 0;
      throw err;
    }
    return out;
  }

  /** The first n buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    const first = this.pieces[0]!;
    if (first.length >= n) return first.subarray(0, n);
    return this.copyOut(n, false);
  }

  /** Removes and returns the first n buffered bytes; a view when they sit in one piece. */
  private take(n: number): Buffer {
    const first = this.pieces[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.pieces.shift();
      else this.pieces[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    return this.copyOut(n, true);
  }

  /** Removes the first n buffered bytes and returns them as views of the pieces they sit in. */
  private takePieces(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const piece = this.pieces[0]!;
      if (piece.length <= left) {
        out.push(piece);
        this.pieces.shift();
        left -= piece.length;
      } else {
        out.push(piece.subarray(0, left));
        this.pieces[0] = piece.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
    return out;
  }

  private copyOut(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let i = 0;
    while (filled < n) {
      const piece = this.pieces[i]!;
      const use = Math.min(piece.length, n - filled);
      piece.copy(out, filled, 0, use);
      filled += use;
      if (consume) {
        if (use === piece.length) {
          i++;
        } else {
          this.pieces[i] = piece.subarray(use);
        }
      } else {
        i++;
      }
    }
    if (consume) {
      this.pieces.splice(0, i);
      this.buffered -= n;
    }
    return out;
  }
}
