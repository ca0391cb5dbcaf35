/**
 * The impairment model on a fake clock (no sockets, no timers): seeded decisions are
 * reproducible, the probabilities come out right over many datagrams, corruption flips one bit
 * of a copy, and the bottleneck departs and tail-drops exactly as its arithmetic says.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_QUEUE_BYTES, Impairment, parseImpairment, type ImpairmentConfig } from '../../src/impair/model.js';
import { seededBytes } from '../helpers/seeded.js';

/** A datagram carrying its sequence number, `size` bytes long. */
function datagram(seq: number, size = 100): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(seq, 0);
  return b;
}

/** Runs `n` datagrams 0.1 ms apart and records every decision as comparable text. */
function decisions(config: ImpairmentConfig, seed: number, n: number, model = new Impairment(config, seed)): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const input = datagram(i);
    const deliveries = model.admit(input, i * 0.1);
    out.push(deliveries.map((d) => `${d.at}:${d.data === input ? 'same' : d.data.toString('hex')}`).join(' '));
  }
  return out;
}

/** Feeds `n` datagrams at time 0..n-1 and returns the model. */
function run(config: ImpairmentConfig, seed: number, n: number, size = 100): Impairment {
  const model = new Impairment(config, seed);
  const input = Buffer.alloc(size);
  for (let i = 0; i < n; i++) model.admit(input, i);
  return model;
}

function popcount(b: Buffer): number {
  let n = 0;
  for (const byte of b) for (let v = byte; v; v &= v - 1) n++;
  return n;
}

const EVERYTHING: ImpairmentConfig = {
  loss: 0.05,
  burst: { pGoodToBad: 0.01, pBadToGood: 0.3, lossInBad: 0.5 },
  duplicate: 0.05,
  reorder: 0.05,
  corrupt: 0.02,
  delayMs: 10,
  jitterMs: 2,
  rateBitsPerSecond: 7e6, // 100 B every 0.1 ms is 8 Mbit/s: the queue overflows
  queueBytes: 1000,
};

describe('seeding', () => {
  it('the same seed gives identical decisions over 10,000 datagrams', () => {
    const a = decisions(EVERYTHING, 42, 10_000);
    const b = decisions(EVERYTHING, 42, 10_000);
    expect(a).toEqual(b);
    // And the run exercised every kind of decision.
    const model = new Impairment(EVERYTHING, 42);
    decisions(EVERYTHING, 42, 10_000, model);
    const s = model.stats;
    for (const k of ['droppedLoss', 'droppedBurst', 'droppedQueue', 'duplicated', 'corrupted', 'reordered'] as const) expect(s[k]).toBeGreaterThan(0);
  });

  it('a different seed gives different decisions', () => {
    const a = decisions(EVERYTHING, 42, 10_000);
    const b = decisions(EVERYTHING, 43, 10_000);
    const differing = a.filter((x, i) => x !== b[i]).length;
    expect(differing).toBeGreaterThan(1000);
  });

  it('enabling one impairment does not change the decisions of another', () => {
    const lossOnly = decisions({ loss: 0.1 }, 7, 5000).map((d) => d === '');
    const withJitter = decisions({ loss: 0.1, jitterMs: 3, duplicate: 0.2 }, 7, 5000).map((d) => d === '');
    expect(withJitter).toEqual(lossOnly);
  });

  it('counters add up: received + duplicated = delivered + drops', () => {
    const s = run(EVERYTHING, 9, 20_000).stats;
    expect(s.received).toBe(20_000);
    expect(s.received + s.duplicated).toBe(s.delivered + s.droppedLoss + s.droppedBurst + s.droppedQueue);
    expect(s.bytesIn).toBe(20_000 * 100);
    expect(s.bytesOut).toBe(s.delivered * 100);
  });
});

describe('loss', () => {
  it('loss=0.05 drops 5% of 100,000 datagrams, to within 0.25 percentage points (3.6 sigma)', () => {
    for (const seed of [1, 2, 3]) {
      const s = run({ loss: 0.05 }, seed, 100_000).stats;
      expect(Math.abs(s.droppedLoss / 100_000 - 0.05)).toBeLessThan(0.0025);
      expect(s.delivered).toBe(100_000 - s.droppedLoss);
    }
  });

  it('loss=0 drops nothing and loss=1 drops everything', () => {
    expect(run({ loss: 0 }, 1, 10_000).stats.delivered).toBe(10_000);
    expect(run({ loss: 1 }, 1, 10_000).stats.delivered).toBe(0);
  });

  it('Gilbert–Elliott bursts last 1/pBadToGood datagrams on average', () => {
    const pGoodToBad = 0.01;
    const pBadToGood = 0.25;
    const model = new Impairment({ burst: { pGoodToBad, pBadToGood, lossInBad: 1 } }, 5);
    const runs: number[] = [];
    let current = 0;
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      const lost = model.admit(datagram(i), i).length === 0;
      if (lost) current++;
      else if (current > 0) {
        runs.push(current);
        current = 0;
      }
    }
    // About 1900 bursts; the mean of a geometric(0.25) has a standard error near 0.08.
    expect(runs.length).toBeGreaterThan(1500);
    const mean = runs.reduce((a, b) => a + b, 0) / runs.length;
    expect(Math.abs(mean - 1 / pBadToGood)).toBeLessThan(0.3);
    // The long-run loss is the bad state's share: pGoodToBad / (pGoodToBad + pBadToGood).
    expect(Math.abs(model.stats.droppedBurst / n - pGoodToBad / (pGoodToBad + pBadToGood))).toBeLessThan(0.005);
    expect(model.stats.droppedLoss).toBe(0);
  });

  it('lossInGood drops in the good state too', () => {
    const s = run({ burst: { pGoodToBad: 0, pBadToGood: 1, lossInBad: 1, lossInGood: 0.1 } }, 3, 50_000).stats;
    expect(Math.abs(s.droppedBurst / 50_000 - 0.1)).toBeLessThan(0.005);
  });
});

describe('duplication and corruption', () => {
  it('dup=0.1 duplicates about 10% and each duplicate is two deliveries of the same bytes', () => {
    const model = new Impairment({ duplicate: 0.1 }, 11);
    let doubles = 0;
    let wrong = 0;
    for (let i = 0; i < 100_000; i++) {
      const input = datagram(i);
      const out = model.admit(input, i);
      if (out.length === 2) doubles++;
      if (out.length < 1 || out.some((d) => d.data !== input)) wrong++;
    }
    expect(wrong).toBe(0);
    expect(model.stats.duplicated).toBe(doubles);
    expect(Math.abs(doubles - 10_000)).toBeLessThan(400); // about 4 sigma
    expect(model.stats.delivered).toBe(100_000 + doubles);
  });

  it('corruption flips exactly one bit of a copy and never touches the input', () => {
    const model = new Impairment({ corrupt: 1 }, 12);
    const bitsSeen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const input = seededBytes(1 + (i % 50), i);
      const before = Buffer.from(input);
      const [d, ...rest] = model.admit(input, i);
      expect(rest).toEqual([]);
      expect(input.equals(before)).toBe(true);
      expect(d!.data).not.toBe(input);
      expect(d!.data.length).toBe(input.length);
      const xor = Buffer.from(input.map((b, k) => b ^ d!.data[k]!));
      expect(popcount(xor)).toBe(1);
      if (input.length === 1) bitsSeen.add(xor[0]!);
    }
    expect(bitsSeen.size).toBe(8); // every bit position of a one-byte datagram gets hit
    expect(model.stats.corrupted).toBe(2000);
  });

  it('corrupt=0.01 corrupts about 1%; an empty datagram passes untouched', () => {
    expect(Math.abs(run({ corrupt: 0.01 }, 13, 100_000).stats.corrupted - 1000)).toBeLessThan(130);
    const model = new Impairment({ corrupt: 1 }, 1);
    const empty = Buffer.alloc(0);
    expect(model.admit(empty, 0)).toEqual([{ at: 0, data: empty }]);
    expect(model.stats.corrupted).toBe(0);
  });
});

describe('delay, jitter and reordering', () => {
  it('delivers at now + delay + [0, jitter)', () => {
    const model = new Impairment({ delayMs: 25, jitterMs: 2 }, 21);
    let lo = Infinity;
    let hi = -Infinity;
    let overtaken = 0;
    let lastAt = -Infinity;
    for (let i = 0; i < 10_000; i++) {
      const now = i * 0.5;
      const [d] = model.admit(datagram(i), now);
      const extra = d!.at - now;
      lo = Math.min(lo, extra);
      hi = Math.max(hi, extra);
      if (d!.at < lastAt) overtaken++;
      lastAt = Math.max(lastAt, d!.at);
    }
    expect(lo).toBeGreaterThanOrEqual(25);
    expect(hi).toBeLessThan(27);
    expect(lo).toBeLessThan(25.01);
    expect(hi).toBeGreaterThan(26.99);
    expect(overtaken).toBeGreaterThan(0); // jitter of 2 ms over 0.5 ms gaps reorders
  });

  it('reorder holds a share of datagrams back by reorderDelayMs', () => {
    const model = new Impairment({ delayMs: 3, reorder: 0.1, reorderDelayMs: 7 }, 22);
    let held = 0;
    let wrong = 0;
    for (let i = 0; i < 50_000; i++) {
      const [d] = model.admit(datagram(i), i);
      const extra = d!.at - i;
      if (extra === 10) held++;
      else if (extra !== 3) wrong++;
    }
    expect(wrong).toBe(0);
    expect(model.stats.reordered).toBe(held);
    expect(Math.abs(held - 5000)).toBeLessThan(300);
  });

  it('reorderDelayMs defaults to 5 ms', () => {
    const [d] = new Impairment({ reorder: 1 }, 1).admit(datagram(0), 100);
    expect(d!.at).toBe(105);
  });
});

describe('bottleneck', () => {
  it('back-to-back 1250-byte datagrams at 10 Mbit/s depart exactly 1 ms apart', () => {
    const model = new Impairment({ rateBitsPerSecond: 10e6, queueBytes: 1_000_000, delayMs: 10 }, 1);
    const ats = Array.from({ length: 5 }, (_, i) => model.admit(datagram(i, 1250), 0)[0]!.at);
    expect(ats).toEqual([11, 12, 13, 14, 15]);
    // Once the link is idle again, a datagram departs one serialization time after it arrives.
    expect(model.admit(datagram(5, 1250), 100)[0]!.at).toBe(111);
    // Arriving while the link is busy, it waits for the link.
    expect(model.admit(datagram(6, 1250), 100.5)[0]!.at).toBe(112);
  });

  it('tail-drops exactly when the queue is full, and the queue drains with time', () => {
    // 4 datagrams of 1250 bytes fill 5000 bytes; each takes 1 ms to depart.
    const model = new Impairment({ rateBitsPerSecond: 10e6, queueBytes: 5000 }, 1);
    const at = (now: number) => model.admit(datagram(0, 1250), now).map((d) => d.at);
    expect([at(0), at(0), at(0), at(0)]).toEqual([[1], [2], [3], [4]]);
    expect(model.queuedBytes(0)).toBe(5000);
    expect(at(0)).toEqual([]); // full
    expect(model.stats.droppedQueue).toBe(1);
    expect(model.queuedBytes(1)).toBe(3750); // the first one has departed at t=1
    expect(at(1)).toEqual([5]);
    expect(at(1)).toEqual([]);
    expect(model.queuedBytes(2.5)).toBe(3750);
    expect(at(2.5)).toEqual([6]);
    expect(model.queuedBytes(6)).toBe(0);
    expect(model.stats.droppedQueue).toBe(2);
    expect(model.stats.maxQueueBytes).toBe(5000);
    // A smaller datagram still fits where a full-size one did not.
    const m2 = new Impairment({ rateBitsPerSecond: 10e6, queueBytes: 5000 }, 1);
    for (let i = 0; i < 3; i++) m2.admit(datagram(0, 1250), 0);
    expect(m2.admit(datagram(0, 1300), 0)).toEqual([]);
    expect(m2.admit(datagram(0, 1250), 0)).toHaveLength(1);
  });

  it('defaults to a 64 KiB queue', () => {
    expect(DEFAULT_QUEUE_BYTES).toBe(64 * 1024);
    const model = new Impairment({ rateBitsPerSecond: 8000 }, 1);
    let accepted = 0;
    for (let i = 0; i < 100; i++) accepted += model.admit(Buffer.alloc(1024), 0).length;
    expect(accepted).toBe(64);
  });

  it('a sustained overload loses what exceeds the rate', () => {
    // 2000 datagrams of 1250 B every 0.5 ms (20 Mbit/s) into 10 Mbit/s: about half get through.
    const s = (() => {
      const model = new Impairment({ rateBitsPerSecond: 10e6, queueBytes: 20_000 }, 1);
      for (let i = 0; i < 2000; i++) model.admit(datagram(i, 1250), i * 0.5);
      return model.stats;
    })();
    expect(s.delivered).toBeGreaterThanOrEqual(1000);
    expect(s.delivered).toBeLessThanOrEqual(1000 + 16 + 1); // what the rate carries plus a full queue
    expect(s.maxQueueBytes).toBeLessThanOrEqual(20_000);
  });
});

describe('validation and parseImpairment', () => {
  it('the constructor rejects out-of-range values', () => {
    expect(() => new Impairment({ loss: 1.5 }, 1)).toThrow(/loss must be a probability/);
    expect(() => new Impairment({ delayMs: -1 }, 1)).toThrow(/delayMs/);
    expect(() => new Impairment({ burst: { pGoodToBad: 0.1, pBadToGood: Number.NaN, lossInBad: 1 } }, 1)).toThrow(/pBadToGood/);
  });

  it('parses the compact form', () => {
    expect(parseImpairment('loss=0.02,delay=25,jitter=2,rate=100M,queue=600K,dup=0.01,reorder=0.05,corrupt=0.001,burst=0.01/0.3/0.5')).toEqual({
      loss: 0.02,
      delayMs: 25,
      jitterMs: 2,
      rateBitsPerSecond: 100e6,
      queueBytes: 600 * 1024,
      duplicate: 0.01,
      reorder: 0.05,
      corrupt: 0.001,
      burst: { pGoodToBad: 0.01, pBadToGood: 0.3, lossInBad: 0.5 },
    });
    expect(parseImpairment('')).toEqual({});
    expect(parseImpairment(' loss=0.5 , delay=3ms ')).toEqual({ loss: 0.5, delayMs: 3 });
    expect(parseImpairment('rate=1.5G,queue=2M')).toEqual({ rateBitsPerSecond: 1.5e9, queueBytes: 2 * 1024 * 1024 });
    expect(parseImpairment('rate=500k,queue=1500')).toEqual({ rateBitsPerSecond: 500e3, queueBytes: 1500 });
    expect(parseImpairment('queue=64KiB,reorder-delay=8')).toEqual({ queueBytes: 65536, reorderDelayMs: 8 });
    expect(parseImpairment('burst=0.01/0.3/1/0.001')).toEqual({ burst: { pGoodToBad: 0.01, pBadToGood: 0.3, lossInBad: 1, lossInGood: 0.001 } });
    // Whatever it parses, the model accepts.
    expect(() => new Impairment(parseImpairment('loss=1,dup=0,rate=0'), 1)).not.toThrow();
  });

  it('rejects bad input with a message that names the problem', () => {
    const cases: Array<[string, RegExp]> = [
      ['lose=0.1', /unknown key "lose"/],
      ['loss=1.2', /loss=1.2: expected a probability in \[0, 1\]/],
      ['loss=-0.1', /loss=-0.1: expected a probability/],
      ['loss=abc', /loss=abc/],
      ['loss', /expected key=value/],
      ['loss=0.1,loss=0.2', /"loss" given twice/],
      ['loss=0.1,,delay=3', /empty item/],
      ['delay=-5', /delay=-5: expected milliseconds/],
      ['rate=100X', /rate=100X: expected bits per second/],
      ['rate=fast', /rate=fast/],
      ['queue=10T', /queue=10T: expected bytes/],
      ['burst=0.1/0.2', /burst=0.1\/0.2: expected G2B\/B2G\/LOSSBAD/],
      ['burst=0.1/2/0.5', /burst=2: expected a probability/],
    ];
    for (const [spec, message] of cases) expect(() => parseImpairment(spec), spec).toThrow(message);
  });
});
