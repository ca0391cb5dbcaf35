/**
 * RttEstimator, RFC 9002 §5: expected values are worked out by hand from the RFC's formulas
 * (all chosen to be exact in binary floating point), plus a long seeded run against a
 * transcription of the RFC's pseudo-code.
 */
import { describe, expect, it } from 'vitest';
import { GRANULARITY_MS, INITIAL_RTT_MS, RttEstimator } from '../../../src/transport/udp/rtt.js';
import { mulberry32 } from '../../helpers/seeded.js';

describe('RttEstimator: before any sample', () => {
  it('uses the RFC 9002 initial values (kInitialRtt 333 ms, rttvar = 333/2)', () => {
    const r = new RttEstimator();
    expect(INITIAL_RTT_MS).toBe(333);
    expect(GRANULARITY_MS).toBe(1);
    expect(r.hasSample).toBe(false);
    expect(r.smoothed).toBe(333);
    expect(r.variance).toBe(166.5);
    expect(r.min).toBe(Infinity);
    // PTO = 333 + 4 · 166.5 + 25 = 1024
    expect(r.pto(25)).toBe(1024);
    expect(r.pto(0)).toBe(999);
    // loss delay = 9/8 · 333
    expect(r.lossDelay()).toBe(374.625);
  });
});

describe('RttEstimator: samples (RFC 9002 §5.3)', () => {
  it('the first sample sets smoothed = sample, variance = sample/2 and ignores the ack delay', () => {
    const r = new RttEstimator();
    r.update(100, 20, 25);
    expect(r.hasSample).toBe(true);
    expect(r.latest).toBe(100);
    expect(r.smoothed).toBe(100);
    expect(r.variance).toBe(50);
    expect(r.min).toBe(100);
  });

  it('later samples: rttvar = 3/4 rttvar + 1/4 |srtt − adjusted|, then srtt = 7/8 srtt + 1/8 adjusted', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25);
    // adjusted = 120 − 4 = 116 (120 ≥ min 100 + 4)
    r.update(120, 4, 25);
    expect(r.latest).toBe(120);
    expect(r.variance).toBe(0.75 * 50 + 0.25 * 16); // 41.5
    expect(r.variance).toBe(41.5);
    expect(r.smoothed).toBe(102); // 87.5 + 14.5
    expect(r.min).toBe(100);
    // adjusted = 70 (no delay); min → 70; rttvar = 31.125 + 0.25·32 = 39.125; srtt = 89.25 + 8.75 = 98
    r.update(70, 0, 25);
    expect(r.variance).toBe(39.125);
    expect(r.smoothed).toBe(98);
    expect(r.min).toBe(70);
    expect(r.latest).toBe(70);
  });

  it('the ack delay is capped at max_ack_delay', () => {
    const r = new RttEstimator();
    r.update(100, 0, 5);
    r.update(130, 50, 5); // delay capped to 5: adjusted 125
    expect(r.variance).toBe(0.75 * 50 + 0.25 * 25); // 43.75
    expect(r.smoothed).toBe(0.875 * 100 + 0.125 * 125); // 103.125
  });

  it('the ack delay is not subtracted when that would go below min_rtt (rtt < min + delay)', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25);
    r.update(104, 5, 25); // 104 < 100 + 5: adjusted stays 104
    expect(r.variance).toBe(0.75 * 50 + 0.25 * 4); // 38.5
    expect(r.smoothed).toBe(100.5);
    // exactly min + delay: subtracted (RFC: latest_rtt >= min_rtt + ack_delay)
    const s = new RttEstimator();
    s.update(100, 0, 25);
    s.update(108, 8, 25); // adjusted 100
    expect(s.variance).toBe(37.5);
    expect(s.smoothed).toBe(100);
  });

  it('a negative ack delay counts as 0', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25);
    r.update(116, -10, 25);
    expect(r.smoothed).toBe(102);
    expect(r.variance).toBe(41.5);
  });

  it('min RTT ignores the ack delay', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25);
    r.update(90, 20, 25); // min is the raw 90, not 70; 90 < 90 + 20 so adjusted stays 90
    expect(r.min).toBe(90);
    expect(r.smoothed).toBe(98.75);
    r.update(200, 25, 25);
    expect(r.min).toBe(90);
  });

  it('ignores negative and NaN samples', () => {
    const r = new RttEstimator();
    r.update(-1, 0, 25);
    r.update(Number.NaN, 0, 25);
    expect(r.hasSample).toBe(false);
    expect(r.smoothed).toBe(333);
    r.update(0, 0, 25); // zero is a valid sample (loopback)
    expect(r.hasSample).toBe(true);
    expect(r.smoothed).toBe(0);
    expect(r.min).toBe(0);
  });

  it('agrees with the RFC 9002 pseudo-code over 10,000 seeded samples', () => {
    const rand = mulberry32(7);
    const r = new RttEstimator();
    const maxAckDelay = 25;
    let first = true;
    let min = Infinity;
    let srtt = 333;
    let rttvar = 166.5;
    for (let i = 0; i < 10_000; i++) {
      const latest = 20 + rand() * 80;
      const ackDelay = rand() * 40;
      r.update(latest, ackDelay, maxAckDelay);
      // RFC 9002 §5.2–5.3
      min = Math.min(min, latest);
      if (first) {
        first = false;
        srtt = latest;
        rttvar = latest / 2;
      } else {
        const delay = Math.min(ackDelay, maxAckDelay);
        let adjusted = latest;
        if (latest >= min + delay) adjusted = latest - delay;
        rttvar = (3 / 4) * rttvar + (1 / 4) * Math.abs(srtt - adjusted);
        srtt = (7 / 8) * srtt + (1 / 8) * adjusted;
      }
      expect(r.min).toBe(min);
      expect(r.smoothed).toBeCloseTo(srtt, 9);
      expect(r.variance).toBeCloseTo(rttvar, 9);
    }
  });
});

describe('RttEstimator: timers', () => {
  it('pto = srtt + max(4·rttvar, granularity) + max_ack_delay', () => {
    const r = new RttEstimator();
    r.update(100, 0, 25);
    r.update(120, 4, 25); // srtt 102, rttvar 41.5
    expect(r.pto(5)).toBe(102 + 166 + 5);
    expect(r.pto(0)).toBe(268);
  });

  it('pto has the 1 ms granularity floor on 4·rttvar', () => {
    const r = new RttEstimator();
    r.update(0.1, 0, 5); // rttvar 0.05: 4·rttvar = 0.2 < 1
    expect(r.pto(5)).toBe(0.1 + 1 + 5);
    const z = new RttEstimator();
    z.update(0, 0, 5);
    expect(z.pto(5)).toBe(6);
    // 4·rttvar exactly 1: either branch gives 1
    const q = new RttEstimator();
    q.update(0.5, 0, 0);
    expect(q.pto(0)).toBe(1.5);
  });

  it('lossDelay = 9/8 · max(srtt, latest), at least the granularity', () => {
    const r = new RttEstimator();
    r.update(80, 0, 25);
    expect(r.lossDelay()).toBe(90); // 9/8 · 80
    r.update(160, 0, 25); // srtt 90, latest 160: the latest rules
    expect(r.smoothed).toBe(90);
    expect(r.lossDelay()).toBe(180);
    r.update(88, 0, 25); // srtt 89.75, latest 88: srtt rules
    expect(r.smoothed).toBe(89.75);
    expect(r.lossDelay()).toBe((9 / 8) * 89.75);
    const tiny = new RttEstimator();
    tiny.update(0.5, 0, 25); // 9/8 · 0.5 = 0.5625 < 1
    expect(tiny.lossDelay()).toBe(1);
    const zero = new RttEstimator();
    zero.update(0, 0, 25);
    expect(zero.lossDelay()).toBe(1);
  });
});
