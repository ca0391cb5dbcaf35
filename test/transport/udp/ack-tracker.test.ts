/**
 * AckTracker: received packet numbers as ranges (newest first) and the ACK schedule, on a fake
 * clock: every ACK_EVERY ack-eliciting packets on a fast stream, MAX_ACK_DELAY_MS after the first
 * pending one, at once on a gap or an out-of-order packet. Checked by hand and against a plain
 * Set model on seeded reordering.
 */
import { describe, expect, it } from 'vitest';
import { ACK_EVERY, AckTracker, MAX_ACK_DELAY_MS, MIN_ACK_EVERY } from '../../../src/transport/udp/ack-tracker.js';
import { MAX_ACK_RANGES, type PnRange } from '../../../src/transport/udp/packet.js';
import { mulberry32 } from '../../helpers/seeded.js';

/** Ranges a set of numbers should give, newest first. */
function rangesOf(model: Iterable<number>): PnRange[] {
  const sorted = [...model].sort((a, b) => b - a);
  const out: PnRange[] = [];
  for (const n of sorted) {
    const last = out[out.length - 1];
    if (last && last.start === n + 1) last.start = n;
    else out.push({ start: n, end: n });
  }
  return out;
}

function rangesNow(t: AckTracker, now = 0): PnRange[] {
  return t.build(now, 0)?.ranges ?? [];
}

/** Tiny spacing: a fast stream, as on loopback. */
const FAST = 0.001;

/**
 * A tracker that has seen a fast in-order stream (so an adaptive ACK frequency, if any, is at its
 * maximum), with its schedule reset. Returns the next packet number and time.
 */
function warmed(count = 300): { t: AckTracker; pn: number; now: number } {
  const t = new AckTracker();
  let now = 1000;
  for (let pn = 0; pn < count; pn++, now += FAST) t.onPacket(pn, true, now);
  t.build(now, 0);
  return { t, pn: count, now };
}

describe('AckTracker: ranges', () => {
  it('nothing received: largest −1, no ACK, nothing due', () => {
    const t = new AckTracker();
    expect(t.largest).toBe(-1);
    expect(t.build(0, 0)).toBeNull();
    expect(t.deadline()).toBe(Infinity);
    expect(t.due(1e9)).toBe(false);
  });

  it('in-order packets produce one range', () => {
    const t = new AckTracker();
    for (let pn = 0; pn < 10; pn++) expect(t.onPacket(pn, true, pn)).toBe(true);
    expect(t.largest).toBe(9);
    expect(t.build(10, 12345)).toEqual({ largest: 9, ackDelayMicros: 1000, maxData: 12345, ranges: [{ start: 0, end: 9 }] });
  });

  it('a stream need not start at 0', () => {
    const t = new AckTracker();
    for (let pn = 7; pn < 10; pn++) t.onPacket(pn, true, 0);
    expect(rangesNow(t)).toEqual([{ start: 7, end: 9 }]);
  });

  it('gaps produce ranges, newest first', () => {
    const t = new AckTracker();
    for (const pn of [0, 1, 2, 5, 6, 9]) expect(t.onPacket(pn, true, 0)).toBe(true);
    expect(rangesNow(t)).toEqual([
      { start: 9, end: 9 },
      { start: 5, end: 6 },
      { start: 0, end: 2 },
    ]);
    expect(t.largest).toBe(9);
  });

  it('filling a gap merges ranges', () => {
    const t = new AckTracker();
    for (const pn of [0, 1, 2, 5, 6, 9]) t.onPacket(pn, true, 0);
    t.onPacket(3, true, 0); // extends 0..2 upwards
    expect(rangesNow(t)).toEqual([
      { start: 9, end: 9 },
      { start: 5, end: 6 },
      { start: 0, end: 3 },
    ]);
    t.onPacket(8, true, 0); // extends 9 downwards
    expect(rangesNow(t)).toEqual([
      { start: 8, end: 9 },
      { start: 5, end: 6 },
      { start: 0, end: 3 },
    ]);
    t.onPacket(4, true, 0); // joins 0..3 and 5..6
    expect(rangesNow(t)).toEqual([
      { start: 8, end: 9 },
      { start: 0, end: 6 },
    ]);
    t.onPacket(7, true, 0); // joins everything
    expect(rangesNow(t)).toEqual([{ start: 0, end: 9 }]);
  });

  it('a packet alone in the middle of a gap becomes its own range', () => {
    const t = new AckTracker();
    for (const pn of [0, 10]) t.onPacket(pn, true, 0);
    t.onPacket(5, true, 0);
    expect(rangesNow(t)).toEqual([
      { start: 10, end: 10 },
      { start: 5, end: 5 },
      { start: 0, end: 0 },
    ]);
  });

  it('a packet older than everything remembered is added as the oldest range', () => {
    const t = new AckTracker();
    for (const pn of [10, 11]) t.onPacket(pn, true, 0);
    t.onPacket(9, true, 0);
    t.onPacket(3, true, 0);
    expect(rangesNow(t)).toEqual([
      { start: 9, end: 11 },
      { start: 3, end: 3 },
    ]);
  });

  it('duplicates return false and are still acknowledged', () => {
    const t = new AckTracker();
    for (const pn of [0, 1, 2, 5, 6]) t.onPacket(pn, true, 0);
    t.build(0, 0);
    for (const pn of [0, 2, 5, 6]) expect(t.onPacket(pn, true, 1)).toBe(false);
    // A duplicate is ack-eliciting: an ACK becomes due (no later than the ack delay), and it covers it.
    expect(t.deadline()).toBeLessThanOrEqual(1 + MAX_ACK_DELAY_MS);
    expect(t.due(1 + MAX_ACK_DELAY_MS)).toBe(true);
    const ack = t.build(1 + MAX_ACK_DELAY_MS, 0);
    expect(ack?.ranges).toEqual([
      { start: 5, end: 6 },
      { start: 0, end: 2 },
    ]);
  });

  it('a lone duplicate after an ACK is acknowledged after the ack delay', () => {
    const t = new AckTracker();
    t.onPacket(0, true, 0);
    t.build(0, 0);
    expect(t.onPacket(0, true, 50)).toBe(false);
    expect(t.deadline()).toBe(50 + MAX_ACK_DELAY_MS);
    expect(t.build(55, 0)?.ranges).toEqual([{ start: 0, end: 0 }]);
  });

  it('build() keeps the history: a second ACK repeats the ranges', () => {
    const t = new AckTracker();
    for (const pn of [0, 1, 4]) t.onPacket(pn, true, 0);
    const a = t.build(1, 7);
    const b = t.build(2, 8);
    expect(b?.ranges).toEqual(a?.ranges);
    expect(b?.maxData).toBe(8);
    // The body is a copy: changing it does not change the tracker.
    a!.ranges[0]!.start = 0;
    expect(rangesNow(t)).toEqual([
      { start: 4, end: 4 },
      { start: 0, end: 1 },
    ]);
  });

  it(`keeps at most MAX_ACK_RANGES (${MAX_ACK_RANGES}) ranges, forgetting the oldest`, () => {
    const t = new AckTracker();
    const N = MAX_ACK_RANGES + 6;
    // Every 4th number: N single-number ranges with 3-number gaps.
    for (let i = 0; i < N; i++) t.onPacket(4 * i, true, i);
    const ranges = rangesNow(t, N);
    expect(ranges.length).toBe(MAX_ACK_RANGES);
    expect(ranges[0]).toEqual({ start: 4 * (N - 1), end: 4 * (N - 1) });
    const oldestKept = 4 * (N - MAX_ACK_RANGES);
    expect(ranges[MAX_ACK_RANGES - 1]).toEqual({ start: oldestKept, end: oldestKept });
    // A packet alone in a gap between two remembered ranges, the list full: a new range, the oldest goes.
    t.onPacket(4 * (N - 1) - 2, true, N);
    const after = rangesNow(t, N);
    expect(after.length).toBe(MAX_ACK_RANGES);
    expect(after[1]).toEqual({ start: 4 * (N - 1) - 2, end: 4 * (N - 1) - 2 });
    expect(after[MAX_ACK_RANGES - 1]).toEqual({ start: oldestKept + 4, end: oldestKept + 4 });
    // Many more gaps: never more than MAX_ACK_RANGES.
    for (let i = 0; i < 500; i++) {
      t.onPacket(1000 + 3 * i, true, N + i);
      expect(rangesNow(t, N + i).length).toBeLessThanOrEqual(MAX_ACK_RANGES);
    }
    const last = rangesNow(t, 1e4);
    expect(last[0]).toEqual({ start: 1000 + 3 * 499, end: 1000 + 3 * 499 });
    expect(last[MAX_ACK_RANGES - 1]).toEqual({ start: 1000 + 3 * (500 - MAX_ACK_RANGES), end: 1000 + 3 * (500 - MAX_ACK_RANGES) });
  });

  it('ranges in every ACK are disjoint, non-adjacent, descending (encodable)', () => {
    const rand = mulberry32(99);
    const t = new AckTracker();
    for (let i = 0; i < 5000; i++) {
      t.onPacket(Math.floor(rand() * 3000), true, i);
      if (i % 50 !== 0) continue;
      const r = rangesNow(t, i);
      expect(r.length).toBeLessThanOrEqual(MAX_ACK_RANGES);
      for (let k = 0; k < r.length; k++) {
        expect(r[k]!.start).toBeLessThanOrEqual(r[k]!.end);
        if (k > 0) expect(r[k]!.end).toBeLessThan(r[k - 1]!.start - 1);
      }
    }
  });

  it('agrees with a plain Set on 5,000 seeded reordered, duplicated, lossy arrivals ', () => {
    const rand = mulberry32(2024);
    const t = new AckTracker();
    const model = new Set<number>();
    // A sender's numbers 0..N; 3% lost, 1% duplicated, and each delayed by up to 8 places.
    const N = 5000;
    const arrivals: Array<{ pn: number; at: number }> = [];
    for (let pn = 0; pn < N; pn++) {
      if (rand() < 0.03) continue;
      arrivals.push({ pn, at: pn + rand() * 8 });
      if (rand() < 0.01) arrivals.push({ pn, at: pn + rand() * 30 });
    }
    arrivals.sort((a, b) => a.at - b.at);
    let checked = 0;
    let largest = -1;
    let exceeded = false;
    for (const [i, { pn, at }] of arrivals.entries()) {
      expect(t.onPacket(pn, true, at)).toBe(!model.has(pn));
      model.add(pn);
      largest = Math.max(largest, pn);
      expect(t.largest).toBe(largest);
      const expected = rangesOf(model);
      if (expected.length > MAX_ACK_RANGES) exceeded = true;
      const got = rangesNow(t, at);
      if (!exceeded) {
        expect(got).toEqual(expected);
        checked++;
      } else {
        // Past the limit the oldest history is forgotten: what is kept stays exact (but the
        // oldest kept range, which may be partial), and nothing unreceived is ever claimed.
        expect(got.length).toBeLessThanOrEqual(MAX_ACK_RANGES);
        expect(got.slice(0, -1)).toEqual(expected.slice(0, got.length - 1));
        if (i % 10 === 0) for (const r of got) for (let n = r.start; n <= r.end; n++) if (!model.has(n)) expect({ claimed: n }).toBeNull();
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });
});

describe('AckTracker: schedule', () => {
  it('constants', () => {
    expect(ACK_EVERY).toBe(64);
    expect(MAX_ACK_DELAY_MS).toBe(5);
  });

  it(`on a fast stream an ACK is due after ACK_EVERY (${ACK_EVERY}) ack-eliciting packets`, () => {
    const { t, pn, now } = warmed();
    expect(t.deadline()).toBe(Infinity);
    for (let i = 0; i < ACK_EVERY - 1; i++) {
      t.onPacket(pn + i, true, now + i * FAST);
      expect(t.deadline()).toBe(now + MAX_ACK_DELAY_MS);
      expect(t.due(now + i * FAST)).toBe(false);
    }
    t.onPacket(pn + ACK_EVERY - 1, true, now + ACK_EVERY * FAST);
    expect(t.deadline()).toBe(-Infinity);
    expect(t.due(now + ACK_EVERY * FAST)).toBe(true);
    const ack = t.build(now + ACK_EVERY * FAST, 0);
    expect(ack?.largest).toBe(pn + ACK_EVERY - 1);
    // …and again after the next ACK_EVERY.
    for (let i = ACK_EVERY; i < 2 * ACK_EVERY - 1; i++) t.onPacket(pn + i, true, now + (i + 1) * FAST);
    expect(t.due(now + 2 * ACK_EVERY * FAST)).toBe(false);
    t.onPacket(pn + 2 * ACK_EVERY - 1, true, now + 2 * ACK_EVERY * FAST);
    expect(t.due(now + 2 * ACK_EVERY * FAST)).toBe(true);
  });

  it('a tracker built with ackEvery = 4 acknowledges every 4 packets on a fast stream', () => {
    const t = new AckTracker(4, 10);
    let now = 0;
    for (let pn = 0; pn < 300; pn++, now += FAST) t.onPacket(pn, true, now);
    t.build(now, 0);
    for (let i = 0; i < 3; i++) t.onPacket(300 + i, true, now);
    expect(t.deadline()).toBe(now + 10);
    t.onPacket(303, true, now);
    expect(t.deadline()).toBe(-Infinity);
  });

  it('never holds an ACK for more ack-eliciting packets than ACK_EVERY, whatever the spacing', () => {
    const rand = mulberry32(5);
    const t = new AckTracker();
    let now = 0;
    let pending = 0;
    for (let pn = 0; pn < 20_000; pn++) {
      now += rand() < 0.5 ? rand() * 0.01 : rand() * 2;
      t.onPacket(pn, true, now);
      pending++;
      if (t.due(now)) {
        t.build(now, 0);
        pending = 0;
      }
      expect(pending).toBeLessThan(ACK_EVERY);
    }
  });

  it('an ACK is due MAX_ACK_DELAY_MS after the first pending packet (deadline())', () => {
    const { t, pn, now } = warmed();
    t.onPacket(pn, true, now + 10);
    expect(t.deadline()).toBe(now + 10 + MAX_ACK_DELAY_MS);
    t.onPacket(pn + 1, false, now + 12); // a later (non-eliciting) packet does not move the deadline
    expect(t.deadline()).toBe(now + 10 + MAX_ACK_DELAY_MS);
    expect(t.due(now + 10 + MAX_ACK_DELAY_MS - 0.001)).toBe(false);
    expect(t.due(now + 10 + MAX_ACK_DELAY_MS)).toBe(true);
    t.build(now + 15, 0);
    expect(t.deadline()).toBe(Infinity);
  });

  it(`a slow stream (1 packet/ms) is acknowledged every MIN_ACK_EVERY (${MIN_ACK_EVERY}) packets, not every ACK_EVERY`, () => {
    const t = new AckTracker();
    let now = 0;
    for (let pn = 0; pn < 100; pn++, now += 1) {
      t.onPacket(pn, true, now);
      if (t.due(now)) t.build(now, 0);
    }
    t.build(now, 0);
    for (let i = 0; i < MIN_ACK_EVERY - 1; i++) {
      t.onPacket(100 + i, true, now + i);
      expect(t.due(now + i)).toBe(false);
    }
    t.onPacket(100 + MIN_ACK_EVERY - 1, true, now + MIN_ACK_EVERY - 1);
    expect(t.due(now + MIN_ACK_EVERY - 1)).toBe(true);
  });

  it('a tracker built with maxAckDelayMs = 25 waits 25 ms', () => {
    const t = new AckTracker(32, 25);
    t.onPacket(0, true, 100);
    expect(t.deadline()).toBe(125);
  });

  it('an ACK is due at once when a gap opens', () => {
    const { t, pn, now } = warmed();
    t.onPacket(pn, true, now);
    expect(t.due(now)).toBe(false);
    t.onPacket(pn + 2, true, now); // pn + 1 missing
    expect(t.deadline()).toBe(-Infinity);
    expect(t.due(now)).toBe(true);
  });

  it('an ACK is due at once when a packet arrives out of order (fills a gap)', () => {
    const { t, pn, now } = warmed();
    t.onPacket(pn, true, now);
    t.onPacket(pn + 2, true, now);
    t.build(now, 0);
    expect(t.deadline()).toBe(Infinity);
    t.onPacket(pn + 1, true, now + 1);
    expect(t.deadline()).toBe(-Infinity);
  });

  it('an ACK is due at once for a packet older than the remembered history', () => {
    const t = new AckTracker();
    t.onPacket(10, true, 0);
    t.build(0, 0);
    t.onPacket(5, true, 1);
    expect(t.deadline()).toBe(-Infinity);
  });

  it('non-ack-eliciting packets alone never make an ACK due (in order, with gaps, out of order)', () => {
    const t = new AckTracker();
    const pns = [0, 1, 2, 10, 5, 4, 30, 31, 3];
    for (const [i, pn] of pns.entries()) {
      expect(t.onPacket(pn, false, i)).toBe(true);
      expect(t.deadline()).toBe(Infinity);
      expect(t.due(1e9)).toBe(false);
    }
    // …but they are acknowledged with the next ACK.
    expect(rangesNow(t)).toEqual(rangesOf(pns));
  });

  it('build() resets the schedule', () => {
    const { t, pn, now } = warmed();
    t.onPacket(pn, true, now);
    t.onPacket(pn + 5, true, now); // gap: immediate
    expect(t.due(now)).toBe(true);
    t.build(now, 0);
    expect(t.deadline()).toBe(Infinity);
    expect(t.due(now + 1000)).toBe(false);
    // The next in-order packet starts a fresh delay, not an immediate ACK.
    t.onPacket(pn + 6, true, now + 100);
    expect(t.deadline()).toBe(now + 100 + MAX_ACK_DELAY_MS);
  });

  it('ackDelayMicros is measured from the arrival of the largest packet', () => {
    const t = new AckTracker();
    t.onPacket(0, true, 0);
    t.onPacket(2, true, 100); // largest, at 100
    expect(t.build(104.5, 0)?.ackDelayMicros).toBe(4500);
    t.onPacket(1, true, 106); // fills a gap: not the largest
    t.onPacket(2, true, 106.5); // duplicate of the largest: not a new arrival of it
    expect(t.build(107, 0)?.ackDelayMicros).toBe(7000);
    t.onPacket(5, true, 110); // new largest
    expect(t.build(110.25, 0)?.ackDelayMicros).toBe(250);
    expect(t.build(110, 0)?.ackDelayMicros).toBe(0);
    // A clock that reads earlier than the arrival gives 0, not a negative delay.
    expect(t.build(109, 0)?.ackDelayMicros).toBe(0);
  });
});
