/**
 * Whole-file hashes, computed while the data streams (never in a second pass).
 * xxh128 (XXH3-128, as `xxhsum -H2` prints it) is the fast default; sha256 is for receipts
 * that must compare with `sha256sum`.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { HashAlgorithm } from '../protocol/index.js';

export interface Hasher {
  readonly algorithm: HashAlgorithm;
  update(data: Uint8Array): void;
  /** The digest in canonical (big-endian) byte order; call once. */
  digest(): Buffer;
}

type NativeXxh128 = new (seed: Buffer) => { update(data: Uint8Array): void; digest(): Buffer };

/**
 * xxhash-addon's native XXH3-128 runs at ~36 GB/s here, hash-wasm's WebAssembly one at ~4 GB/s
 * (and @node-rs/xxhash streams only the 64-bit variant). On a 2-core machine where sender and
 * receiver share the cores, the difference is about a fifth of the throughput, so the native one
 * is preferred and the WebAssembly one kept for platforms where the addon does not load.
 */
function loadNative(): NativeXxh128 | null {
  try {
    const addon = createRequire(import.meta.url)('xxhash-addon') as { XXHash128: NativeXxh128 };
    const probe = new addon.XXHash128(SEED_ZERO);
    probe.update(Buffer.from('abc'));
    if (probe.digest().toString('hex') === '06b05ab6733a618578af5f94892f3950') return addon.XXHash128;
  } catch {
    // no prebuilt binary for this platform and no compiler at install time
  }
  return null;
}

/** XXH3's default seed (0), as the 8-byte buffer the addon takes. */
const SEED_ZERO = Buffer.alloc(8);
const NativeXXHash128 = loadNative();

/** Which XXH3-128 implementation runs: 'native' (xxhash-addon) or 'wasm' (hash-wasm). */
export const xxh128Implementation: 'native' | 'wasm' = NativeXXHash128 ? 'native' : 'wasm';

/** A fresh streaming hasher for `algorithm`. */
export async function createHasher(algorithm: HashAlgorithm): Promise<Hasher> {
  if (algorithm === 'sha256') {
    const h = createHash('sha256');
    return { algorithm, update: (d) => void h.update(d), digest: () => h.digest() };
  }
  if (NativeXXHash128) {
    const h = new NativeXXHash128(SEED_ZERO);
    return { algorithm, update: (d) => h.update(d), digest: () => h.digest() };
  }
  // Loaded only here, where the native addon is missing: it costs about 20 ms of every start-up.
  const { createXXHash128 } = await import('hash-wasm');
  const h = await createXXHash128();
  h.init();
  return { algorithm, update: (d) => void h.update(d), digest: () => Buffer.from(h.digest('binary')) };
}

/** Bytes per read when hashing a file in place. */
const HASH_READ_BLOCK = 4 * 1024 * 1024;

/** The whole-file hash of the file at `file` (read in large blocks); also returns how many bytes were read. */
export async function hashFile(file: string, algorithm: HashAlgorithm): Promise<{ digest: Buffer; size: number }> {
  const hasher = await createHasher(algorithm);
  const handle = await fs.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const buf = Buffer.allocUnsafeSlow(HASH_READ_BLOCK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, size);
      if (bytesRead === 0) break;
      hasher.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { digest: hasher.digest(), size };
  } finally {
    await handle.close().catch(() => {});
  }
}
