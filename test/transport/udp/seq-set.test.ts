/** SeqSet: the receiver's duplicate filter (a floor plus the numbers held above it), by hand and against a plain Set. */
import { describe, expect, it } from 'vitest';
import { SeqSet } from '../../../src/transport/udp/seq-set.js';
import { mulberry32 } from '../../helpers/seeded.js';

describe('SeqSet', () => {
  it('starts empty', () => {
    const s = new SeqSet();
    expect(s.has(0)).toBe(false);
    expect(s.has(5)).toBe(false);
    expect(s.gaps).toBe(0);
  });

  it('in-order numbers advance the floor and hold nothing', () => {
    const s = new SeqSet();
    for (let i = 0; i < 100; i++) expect(s.add(i)).toBe(true);
    expect(s.gaps).toBe(0);
    expect(s.has(99)).toBe(true);
    expect(s.has(100)).toBe(false);
  });

  it('detects duplicates below the floor', () => {
    const s = new SeqSet();
    for (let i = 0; i < 10; i++) s.add(i);
    for (let i = 0; i < 10; i++) expect(s.add(i)).toBe(false);
    expect(s.gaps).toBe(0);
  });

  it('detects duplicates above the floor (held out of order)', () => {
    const s = new SeqSet();
    expect(s.add(5)).toBe(true);
    expect(s.add(7)).toBe(true);
    expect(s.gaps).toBe(2);
    expect(s.add(5)).toBe(false);
    expect(s.add(7)).toBe(false);
    expect(s.has(6)).toBe(false);
    expect(s.has(5)).toBe(true);
    expect(s.gaps).toBe(2);
  });

  it('the floor advances across held numbers when the gap fills', () => {
    const s = new SeqSet();
    for (const n of [1, 2, 3, 5]) s.add(n);
    expect(s.gaps).toBe(4);
    expect(s.add(0)).toBe(true); // floor → 4, releasing 1..3
    expect(s.gaps).toBe(1); // only 5 held
    expect(s.add(3)).toBe(false); // now below the floor
    expect(s.has(4)).toBe(false);
    expect(s.add(4)).toBe(true); // floor → 6
    expect(s.gaps).toBe(0);
    for (let i = 0; i < 6; i++) expect(s.has(i)).toBe(true);
    expect(s.has(6)).toBe(false);
  });

  it('agrees with a plain Set on 20,000 seeded out-of-order, duplicated numbers', () => {
    const rand = mulberry32(42);
    const s = new SeqSet();
    const model = new Set<number>();
    let base = 0;
    let maxGaps = 0;
    for (let i = 0; i < 20_000; i++) {
      // Mostly near the front, some duplicates of old numbers, like a reordering link with retransmissions.
      const n = rand() < 0.1 ? Math.floor(rand() * (base + 1)) : base + Math.floor(rand() * 40);
      if (n === base) base++;
      while (model.has(base)) base++;
      expect(s.add(n)).toBe(!model.has(n));
      model.add(n);
      maxGaps = Math.max(maxGaps, s.gaps);
    }
    for (let n = 0; n < base + 50; n++) expect(s.has(n)).toBe(model.has(n));
    let above = 0;
    for (const n of model) if (n > base) above++;
    expect(s.gaps).toBe(above);
    // What is held stays bounded by how far ahead numbers arrive.
    expect(maxGaps).toBeLessThan(40);
  });
});
