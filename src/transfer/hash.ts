/**
 * Whole-file hashes, computed while the data streams (never in a second pass).
 * xxh128 (XXH3-128, as `xxhsum -H2` prints it) is the fast default; sha256 is for receipts
 * that must compare with `sha256sum`.
 */
import { createHash } from 'node:crypto';
import { createXXHash128 } from 'hash-wasm';
import type { HashAlgorithm } from '../protocol/index.js';

export interface Hasher {
  readonly algorithm: HashAlgorithm;
  update(data: Uint8Array): void;
  /** The digest in canonical (big-endian) byte order; call once. */
  digest(): Buffer;
}

/** A fresh streaming hasher for `algorithm`. */
export async function createHasher(algorithm: HashAlgorithm): Promise<Hasher> {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { algorithm, update: (d) => void h.update(d), digest: () => h.digest() };
  }
  // hash-wasm: one WebAssembly XXH3-128 at ~4 GB/s here; @node-rs/xxhash streams only the 64-bit variant.
  const h = await createXXHash128();
  h.init();
  return { algorithm, update: (d) => void h.update(d), digest: () => Buffer.from(h.digest('binary')) };
}
