/**
 * Seeded randomness for the fuzzer. Every input has its own generator, seeded from
 * (run seed, target name, input index), so input I can be rebuilt without building 0..I-1:
 * that is what makes `--index I` replay exactly one input.
 */
import { seededRandom } from '../impair/model.js';

const TWO_32 = 0x1_0000_0000;

/** FNV-1a over the UTF-16 units of `text` (target names are ASCII). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The 32-bit seed of input `index` of `target` in a run seeded with `seed`. Injective in `index`
 * (for index < 2^32): the run's base is added to it, and sfc32's seeding spreads neighbours apart.
 */
export function inputSeed(seed: number, target: string, index: number): number {
  const base = Math.imul((seed >>> 0) ^ fnv1a(target), 0x9e3779b1) >>> 0;
  return (base + index) >>> 0;
}

/** A small seeded generator (sfc32 from src/impair/model.ts) with the draws the fuzzer needs. */
export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = seededRandom(seed);
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    return Math.floor(this.next() * TWO_32);
  }

  /** A uniform integer in [0, n), for 1 <= n <= 2^32. */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A uniform integer in [lo, hi], both included. */
  range(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.below(items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }

  /** A uniform integer in [0, 2^53). */
  u53(): number {
    return (this.u32() & 0x1f_ffff) * TWO_32 + this.u32();
  }

  /** A uniform unsigned 64-bit integer. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** A length in [0, max], skewed towards small values (half of them under max/16). */
  length(max: number): number {
    return this.chance(0.5) ? this.below(Math.floor(max / 16) + 1) : this.below(max + 1);
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) out.writeUInt32BE(this.u32(), i);
    for (; i < n; i++) out[i] = this.below(256);
    return out;
  }

  /** `n` bytes that are cheap to make for large n: a short random pattern repeated. */
  cheapBytes(n: number): Buffer {
    if (n <= 256) return this.bytes(n);
    return Buffer.alloc(n, this.bytes(1 + this.below(61)));
  }
}
