/**
 * CRC32C (Castagnoli) through fast-crc32c. Its loader silently falls back to a JavaScript
 * version about 15x slower when the native sse4_crc32 build is missing; we load the native
 * one ourselves first so the CLI can say which one is in use.
 */
import { createRequire } from 'node:module';

type Crc32cImpl = { calculate(input: Buffer | string, initial?: number): number };

const require = createRequire(import.meta.url);
const CHECK_INPUT = 'The quick brown fox jumps over the lazy dog';
const CHECK_VALUE = 0x22620404;

type Loaded = { impl: Crc32cImpl; name: 'sse4.2' | 'native-table' | 'js' };

function load(): Loaded {
  try {
    // Resolved from fast-crc32c's own folder: it is fast-crc32c's optional dependency, not ours.
    const native = createRequire(require.resolve('fast-crc32c'))('sse4_crc32') as Crc32cImpl & { hardware_support?: boolean };
    if (native.calculate(CHECK_INPUT) === CHECK_VALUE) {
      return { impl: native, name: native.hardware_support ? 'sse4.2' : 'native-table' };
    }
  } catch {
    // sse4_crc32 was not built on this machine: fall through to the JS version
  }
  return { impl: require('fast-crc32c/impls/js_crc32c') as Crc32cImpl, name: 'js' };
}

const loaded = load();

/** Which CRC32C implementation runs: 'sse4.2' (native, hardware), 'native-table', or 'js' (the slow fallback). */
export const crc32cImplementation = loaded.name;

/** CRC32C of `data`, continuing from `initial` (the CRC of the bytes before it). */
export function crc32c(data: Uint8Array, initial = 0): number {
  return loaded.impl.calculate(data as Buffer, initial) >>> 0;
}
