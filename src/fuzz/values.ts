/** Random field values for the generators: numbers near the edges, text of every UTF-8 width. */
import type { Rng } from './random.js';

/** Values where integer handling breaks: zero, one, sign bits, the top of each width, 2^53. */
const EDGE_U32 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const EDGE_U53 = [...EDGE_U32, 0x1_0000_0000, 0x1_0000_0001, 2 ** 52, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER];
const EDGE_U64 = [0n, 1n, 0xffffffffn, 0x1_0000_0000n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];

/** An integer in [0, max] (max <= 2^32-1): an edge value a quarter of the time, else uniform. */
export function uint(rng: Rng, max: number): number {
  if (rng.chance(0.25)) {
    const edges = EDGE_U32.filter((v) => v <= max);
    return rng.pick([...edges, max]);
  }
  return rng.below(max + 1);
}

/** An integer in [0, 2^53): edge values a quarter of the time, small values a quarter, else uniform. */
export function u53(rng: Rng): number {
  const r = rng.below(4);
  if (r === 0) return rng.pick(EDGE_U53);
  if (r === 1) return rng.below(1 << 20);
  return rng.u53();
}

/** A 64-bit session id, sometimes an edge value. */
export function session(rng: Rng): bigint {
  return rng.chance(0.2) ? rng.pick(EDGE_U64) : rng.u64();
}

/** Code points of every UTF-8 width, and the ones decoders trip on (NUL, BOM, U+FFFD, last plane). */
const SPECIAL_CODE_POINTS = [0x00, 0x7f, 0x80, 0x7ff, 0x800, 0xfeff, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff];

function codePoint(rng: Rng): number {
  switch (rng.below(6)) {
    case 0:
    case 1:
      return 0x20 + rng.below(0x5f); // printable ASCII
    case 2:
      return 0x80 + rng.below(0x800 - 0x80); // two bytes
    case 3: {
      const cp = 0x800 + rng.below(0x10000 - 0x800); // three bytes, no lone surrogates
      return cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
    }
    case 4:
      return 0x10000 + rng.below(0x110000 - 0x10000); // four bytes (a surrogate pair in JS)
    default:
      return rng.pick(SPECIAL_CODE_POINTS);
  }
}

/** A string of at most `maxBytes` UTF-8 bytes; sometimes exactly at the limit. */
export function text(rng: Rng, maxBytes: number): string {
  // Mostly short (the parsers' interest is in the length fields, not in long text), sometimes any length, sometimes the limit.
  const r = rng.below(10);
  const target = r === 0 ? maxBytes : r < 3 ? rng.below(maxBytes + 1) : rng.below(Math.min(maxBytes, 24) + 1);
  let out = '';
  let bytes = 0;
  // Bounded: each step adds 1..4 bytes or stops.
  for (let guard = 0; guard < maxBytes + 8 && bytes < target; guard++) {
    const cp = codePoint(rng);
    const width = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + width > maxBytes) {
      if (bytes + 1 > maxBytes) break;
      out += 'x';
      bytes += 1;
      continue;
    }
    out += String.fromCodePoint(cp);
    bytes += width;
  }
  if (rng.chance(0.05) && bytes + 3 <= maxBytes) out = '\ufeff' + out; // a leading BOM is text
  return out;
}
