/** RangeSet: sorted, merged [start, end) ranges; checked by hand and against a plain Set model. */
import { describe, expect, it } from 'vitest';
import { RangeSet } from '../../src/transfer/range-set.js';
import { mulberry32 } from '../helpers/seeded.js';

/** The ranges a plain set of integers should give. */
function rangesOf(model: Set<number>): Array<[number, number]> {
  const sorted = [...model].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (const n of sorted) {
    const last = out.at(-1);
    if (last && last[1] === n) last[1] = n + 1;
    else out.push([n, n + 1]);
  }
  return out;
}

function setOf(...ns: number[]): RangeSet {
  const s = new RangeSet();
  for (const n of ns) expect(s.add(n)).toBe(true);
  return s;
}

describe('RangeSet', () => {
  it('starts empty', () => {
    const s = new RangeSet();
    expect(s.size).toBe(0);
    expect(s.ranges()).toEqual([]);
    expect(s.has(0)).toBe(false);
  });

  it('adds, reports membership and size', () => {
    const s = setOf(5);
    expect(s.size).toBe(1);
    expect(s.has(5)).toBe(true);
    expect(s.has(4)).toBe(false);
    expect(s.has(6)).toBe(false);
    expect(s.ranges()).toEqual([[5, 6]]);
  });

  it('returns false for a duplicate and does not count it', () => {
    const s = setOf(0, 1, 2, 10);
    for (const n of [0, 1, 2, 10]) expect(s.add(n)).toBe(false);
    expect(s.size).toBe(4);
    expect(s.ranges()).toEqual([
      [0, 3],
      [10, 11],
    ]);
  });

  it('keeps in-order adds as one range', () => {
    const s = new RangeSet();
    for (let i = 0; i < 1000; i++) s.add(i);
    expect(s.ranges()).toEqual([[0, 1000]]);
    expect(s.size).toBe(1000);
  });

  it('merges with the range on the left', () => {
    const s = setOf(3, 4);
    expect(s.add(5)).toBe(true);
    expect(s.ranges()).toEqual([[3, 6]]);
  });

  it('merges with the range on the right', () => {
    const s = setOf(3, 4);
    expect(s.add(2)).toBe(true);
    expect(s.ranges()).toEqual([[2, 5]]);
  });

  it('merges both sides into one range', () => {
    const s = setOf(0, 1, 3, 4, 10);
    expect(s.add(2)).toBe(true);
    expect(s.ranges()).toEqual([
      [0, 5],
      [10, 11],
    ]);
    expect(s.size).toBe(6);
  });

  it('inserts a lone range between, before and after others', () => {
    const s = setOf(10, 20);
    s.add(15);
    s.add(0);
    s.add(30);
    expect(s.ranges()).toEqual([
      [0, 1],
      [10, 11],
      [15, 16],
      [20, 21],
      [30, 31],
    ]);
    expect(s.has(15)).toBe(true);
    expect(s.has(16)).toBe(false);
  });

  it('handles large integers (chunk indexes past 2^32)', () => {
    const big = 2 ** 40;
    const s = setOf(big, big + 2, big + 1);
    expect(s.ranges()).toEqual([[big, big + 3]]);
    expect(s.has(big + 3)).toBe(false);
  });

  it('agrees with a Set model over 10,000 seeded random operations', () => {
    const rand = mulberry32(0xc0ffee);
    const s = new RangeSet();
    const model = new Set<number>();
    for (let op = 0; op < 10_000; op++) {
      const n = Math.floor(rand() * 600);
      if (rand() < 0.7) {
        const wasNew = !model.has(n);
        model.add(n);
        // Plain comparisons in the loop (expect() per step would dominate the run time).
        if (s.add(n) !== wasNew) expect.fail(`add(${n}) at op ${op} did not return ${wasNew}`);
      } else if (s.has(n) !== model.has(n)) {
        expect.fail(`has(${n}) at op ${op} did not return ${model.has(n)}`);
      }
      if (s.size !== model.size) expect.fail(`size ${s.size} at op ${op}, the model has ${model.size}`);
      if (op % 97 === 0) expect(s.ranges()).toEqual(rangesOf(model));
    }
    expect(s.ranges()).toEqual(rangesOf(model));
    for (let n = -1; n <= 601; n++) expect(s.has(n), `has(${n})`).toBe(model.has(n));
    // Every range is non-empty, sorted and separated by a gap (fully merged).
    const ranges = s.ranges();
    for (let i = 0; i < ranges.length; i++) {
      expect(ranges[i]![0]).toBeLessThan(ranges[i]![1]);
      if (i > 0) expect(ranges[i - 1]![1]).toBeLessThan(ranges[i]![0]);
    }
  });
});

describe('RangeSet.fromRanges', () => {
  it('builds the set in one step per range, merging touching ranges', () => {
    const set = RangeSet.fromRanges([[0, 3], [3, 5], [10, 1_000_000]], 2_000_000)!;
    expect(set.ranges()).toEqual([[0, 5], [10, 1_000_000]]);
    expect(set.size).toBe(5 + 999_990);
    expect(set.has(4)).toBe(true);
    expect(set.has(5)).toBe(false);
    expect(set.end).toBe(1_000_000);
  });

  it.each([
    ['out of order', [[5, 6], [0, 1]]],
    ['overlapping', [[0, 5], [4, 6]]],
    ['empty range', [[2, 2]]],
    ['past the limit', [[0, 11]]],
    ['negative', [[-1, 2]]],
    ['not an integer', [[0.5, 2]]],
  ] as Array<[string, Array<[number, number]>]>)('refuses ranges %s', (_what, ranges) => {
    expect(RangeSet.fromRanges(ranges, 10)).toBeNull();
  });
});

describe('RangeSet.addRange', () => {
  it('merges what it overlaps or touches, keeps gaps apart', () => {
    const s = new RangeSet();
    s.addRange(10, 20);
    s.addRange(30, 40);
    s.addRange(0, 5);
    expect(s.ranges()).toEqual([[0, 5], [10, 20], [30, 40]]);
    s.addRange(20, 30); // touches both neighbours
    expect(s.ranges()).toEqual([[0, 5], [10, 40]]);
    s.addRange(3, 12); // overlaps both
    expect(s.ranges()).toEqual([[0, 40]]);
    s.addRange(50, 50); // empty: nothing
    expect(s.size).toBe(40);
  });

  it('agrees with a plain Set over 2,000 random ranges (seeded)', () => {
    const rand = mulberry32(7);
    const s = new RangeSet();
    const model = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const start = Math.floor(rand() * 5000);
      const end = start + Math.floor(rand() * 40);
      s.addRange(start, end);
      for (let n = start; n < end; n++) model.add(n);
      if (i % 100 === 0) expect(s.ranges()).toEqual(rangesOf(model));
    }
    expect(s.ranges()).toEqual(rangesOf(model));
    expect(s.size).toBe(model.size);
  });
});
