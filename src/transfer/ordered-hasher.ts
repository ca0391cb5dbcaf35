/**
 * Feeds chunks to a streaming hash in file order, whatever order they arrive in. Chunks that
 * arrive early wait in memory; the transport's receive window bounds how early they can be,
 * and a hard cap refuses a peer that sends them further out of order than that.
 */
import { SockxferError } from '../errors.js';
import type { Hasher } from './hash.js';

/** Out-of-order bytes held before the peer is refused. */
export const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** Pieces below this size are staged and hashed together; the staging buffer's size. */
const SMALL_PIECE = 16 * 1024;
const STAGING_SIZE = 256 * 1024;

export class OrderedHasher {
  private next = 0;
  private readonly held = new Map<number, { pieces: Buffer[]; length: number }>();
  private heldBytes = 0;
  /** Allocated at the second small piece: a one-chunk file (thousands of them in a tree) needs none. */
  private staging: Buffer | null = null;
  private smallPieces = 0;
  private staged = 0;

  constructor(private readonly hasher: Hasher) {}

  /** Chunks hashed so far (all chunks below this index). */
  get hashedChunks(): number {
    return this.next;
  }

  /** Adds chunk `index` (each index exactly once), given as pieces totalling `length` bytes. */
  add(index: number, pieces: Buffer[], length: number): void {
    if (index !== this.next) {
      if (this.heldBytes + length > MAX_HELD_BYTES) {
        throw new SockxferError('E_PROTOCOL', `chunk ${index} arrived too far ahead of chunk ${this.next}`);
      }
      // Copied: the pieces may be small views pinning whole socket buffers, and a hostile sender
      // could hold many of them to make a few bytes of accounting cost megabytes of memory.
      this.held.set(index, { pieces: [Buffer.concat(pieces, length)], length });
      this.heldBytes += length;
      return;
    }
    for (const piece of pieces) this.update(piece);
    this.next++;
    for (let early = this.held.get(this.next); early !== undefined; early = this.held.get(this.next)) {
      this.held.delete(this.next);
      this.heldBytes -= early.length;
      for (const piece of early.pieces) this.update(piece);
      this.next++;
    }
  }

  /**
   * Small pieces (UDP chunks are about 1.4 KB) are gathered into a staging buffer and hashed in
   * one call: the call into the native hash costs more than copying the bytes.
   */
  private update(piece: Buffer): void {
    if (piece.length >= SMALL_PIECE || ++this.smallPieces === 1) {
      this.flush();
      this.hasher.update(piece);
      return;
    }
    this.staging ??= Buffer.allocUnsafe(STAGING_SIZE);
    if (this.staged + piece.length > this.staging.length) this.flush();
    piece.copy(this.staging, this.staged);
    this.staged += piece.length;
  }

  private flush(): void {
    if (this.staged === 0 || this.staging === null) return;
    this.hasher.update(this.staging.subarray(0, this.staged));
    this.staged = 0;
  }

  digest(): Buffer {
    this.flush();
    this.staging = null;
    return this.hasher.digest();
  }
}
