/**
 * A seeded model of a bad network path, for tests and benchmarks: loss (random and bursty),
 * duplication, reordering, corruption, delay with jitter, and a rate-limited bottleneck with a
 * finite tail-drop queue. Pure: no sockets, no timers, no clock. The caller says when each
 * datagram arrives (`now`, in ms) and gets back when and what to deliver; src/impair/relay.ts
 * puts it between real sockets.
 *
 * Reproducible by construction: every datagram consumes exactly DRAWS_PER_DATAGRAM numbers
 * from the PRNG, in a fixed order, whatever the configuration and whatever happens to it. So the
 * same seed and the same arrivals give the same decisions, and turning on jitter (say) does not
 * change which datagrams are lost.
 */

/** What the path does to datagrams. Every field is optional; `{}` is a perfect wire. */
export interface ImpairmentConfig {
  /** Random drop probability 0..1 (independent per datagram). */
  loss?: number;
  /**
   * Gilbert–Elliott burst loss: a two-state Markov chain stepped once per datagram, then the
   * datagram is lost with the current state's probability. Bad runs last 1/pBadToGood
   * datagrams on average. `lossInGood` defaults to 0.
   */
  burst?: { pGoodToBad: number; pBadToGood: number; lossInBad: number; lossInGood?: number };
  /** Probability a datagram is forwarded twice (both copies go through the bottleneck). */
  duplicate?: number;
  /** Probability a datagram is held back an extra `reorderDelayMs`, so later ones overtake it. */
  reorder?: number;
  /** Default 5 ms. */
  reorderDelayMs?: number;
  /** Probability one random bit of the datagram is flipped (on a copy; the input is never touched). */
  corrupt?: number;
  /** One-way delay in ms, after the bottleneck. */
  delayMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs) per copy. Jitter larger than the gap between datagrams reorders them. */
  jitterMs?: number;
  /** Bottleneck rate in bits per second; 0 or undefined = unlimited (no queue either). */
  rateBitsPerSecond?: number;
  /**
   * Bytes the bottleneck holds: the datagram being serialized plus those waiting behind it.
   * A datagram that would take it past this is dropped (tail drop), so it must be at least
   * the largest datagram. Default DEFAULT_QUEUE_BYTES.
   */
  queueBytes?: number;
}

/**
 * 64 KiB: a shallow switch-like buffer (about 5 ms at 100 Mbit/s, 50 ms at 10 Mbit/s). Set
 * `queueBytes` (queue=600K) to a bandwidth-delay product to model a deep router buffer.
 */
export const DEFAULT_QUEUE_BYTES = 64 * 1024;
/** Extra hold of a reordered datagram when `reorderDelayMs` is not given. */
export const DEFAULT_REORDER_DELAY_MS = 5;

/** Counters since construction. received + duplicated = delivered + all three dropped counts. */
export interface ImpairmentStats {
  /** Datagrams admitted. */
  received: number;
  /** Copies scheduled for delivery (a duplicated datagram counts twice). */
  delivered: number;
  bytesIn: number;
  bytesOut: number;
  droppedLoss: number;
  droppedBurst: number;
  /** Copies dropped because the bottleneck queue was full. */
  droppedQueue: number;
  duplicated: number;
  corrupted: number;
  /** Copies held back by `reorder` (whether or not anything actually overtook them). */
  reordered: number;
  /** The most bytes the bottleneck queue ever held, including the arriving datagram. */
  maxQueueBytes: number;
}

/** One copy to deliver: when (ms, the caller's clock) and the bytes. */
export interface Delivery {
  at: number;
  data: Buffer;
}

// ---------------------------------------------------------------------------------------------
// PRNG

/**
 * splitmix32 (Wellons' 32-bit finalizer over a Weyl sequence): only used to spread a 32-bit
 * seed over sfc32's state, so that seeds 1 and 2 start far apart.
 */
function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state, passes PractRand),
 * seeded with three splitmix32 outputs and a counter of 1, then run 15 steps to mix. Returns
 * floats in [0, 1) with 32 bits of resolution.
 */
export function seededRandom(seed: number): () => number {
  const init = splitmix32(seed);
  let a = init();
  let b = init();
  let c = init();
  let d = 1;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 15; i++) next();
  return next;
}

// ---------------------------------------------------------------------------------------------
// The model

/**
 * Numbers drawn per datagram, always all of them, in this order:
 *   0 burst state step, 1 burst loss, 2 random loss, 3 corrupt?, 4 which bit,
 *   5 duplicate?, 6 jitter of copy 1, 7 reorder? copy 1, 8 jitter of copy 2, 9 reorder? copy 2.
 */
const DRAWS_PER_DATAGRAM = 10;

function isProbability(p: number): boolean {
  return Number.isFinite(p) && p >= 0 && p <= 1;
}

/** Throws an Error naming the first field that is out of range. */
function validate(config: ImpairmentConfig): void {
  const probability = (name: string, p: number | undefined) => {
    if (p !== undefined && !isProbability(p)) throw new Error(`impairment: ${name} must be a probability in [0, 1], got ${p}`);
  };
  const nonNegative = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new Error(`impairment: ${name} must be a finite number >= 0, got ${v}`);
  };
  probability('loss', config.loss);
  probability('duplicate', config.duplicate);
  probability('reorder', config.reorder);
  probability('corrupt', config.corrupt);
  if (config.burst) {
    probability('burst.pGoodToBad', config.burst.pGoodToBad);
    probability('burst.pBadToGood', config.burst.pBadToGood);
    probability('burst.lossInBad', config.burst.lossInBad);
    probability('burst.lossInGood', config.burst.lossInGood);
  }
  nonNegative('reorderDelayMs', config.reorderDelayMs);
  nonNegative('delayMs', config.delayMs);
  nonNegative('jitterMs', config.jitterMs);
  nonNegative('rateBitsPerSecond', config.rateBitsPerSecond);
  nonNegative('queueBytes', config.queueBytes);
}

/**
 * One direction of an impaired path. Per datagram, in this order:
 *   1. burst: step the Gilbert–Elliott state, then lose it with that state's probability;
 *   2. loss: lose it with probability `loss`;
 *   3. corruption: flip one bit of a copy;
 *   4. duplication: make it two copies;
 *   5. per copy: the bottleneck (tail drop if the queue is full, else depart at
 *      max(now, link free) + bits / rate), then delivery at departure + delay + jitter
 *      (+ reorderDelayMs if held back).
 * A datagram lost in step 1 or 2 is not corrupted or duplicated, but the draws are made anyway.
 */
export class Impairment {
  /** Counters; read them, do not write them. */
  readonly stats: ImpairmentStats = {
    received: 0,
    delivered: 0,
    bytesIn: 0,
    bytesOut: 0,
    droppedLoss: 0,
    droppedBurst: 0,
    droppedQueue: 0,
    duplicated: 0,
    corrupted: 0,
    reordered: 0,
    maxQueueBytes: 0,
  };

  private readonly config: ImpairmentConfig;
  private readonly random: () => number;
  private readonly draws = new Float64Array(DRAWS_PER_DATAGRAM);
  private readonly queueLimit: number;
  private readonly reorderDelayMs: number;
  /** Gilbert–Elliott state: true while in the bad state. */
  private bad = false;
  /** When the bottleneck finishes sending what it has (ms). */
  private linkFreeAt = -Infinity;
  /** The bottleneck queue, FIFO: departure times and sizes from index `head` on. */
  private departures: number[] = [];
  private sizes: number[] = [];
  private head = 0;
  private queued = 0;

  /** Throws an Error if a field is out of range. `seed` is taken as a 32-bit unsigned integer. */
  constructor(config: ImpairmentConfig, seed: number) {
    validate(config);
    this.config = { ...config, burst: config.burst && { ...config.burst } };
    this.random = seededRandom(seed);
    this.queueLimit = config.queueBytes ?? DEFAULT_QUEUE_BYTES;
    this.reorderDelayMs = config.reorderDelayMs ?? DEFAULT_REORDER_DELAY_MS;
  }

  /** Bytes in the bottleneck at `now`: datagrams that have not finished departing. */
  queuedBytes(now: number): number {
    this.drain(now);
    return this.queued;
  }

  /**
   * One datagram arrives at `now` (ms). Returns zero, one or two deliveries in the order they
   * were made (not necessarily in time order: jitter and reorder can swap the two copies). The
   * bytes are `datagram` itself unless corrupted, then a corrupted copy.
   */
  admit(datagram: Buffer, now: number): Delivery[] {
    const c = this.config;
    const u = this.draws;
    for (let i = 0; i < DRAWS_PER_DATAGRAM; i++) u[i] = this.random();
    this.stats.received++;
    this.stats.bytesIn += datagram.length;

    // 1. Burst loss.
    if (c.burst) {
      this.bad = this.bad ? u[0]! >= c.burst.pBadToGood : u[0]! < c.burst.pGoodToBad;
      const p = this.bad ? c.burst.lossInBad : (c.burst.lossInGood ?? 0);
      if (u[1]! < p) {
        this.stats.droppedBurst++;
        return [];
      }
    }
    // 2. Random loss.
    if (c.loss !== undefined && u[2]! < c.loss) {
      this.stats.droppedLoss++;
      return [];
    }
    // 3. Corruption (an empty datagram has no bit to flip).
    let data = datagram;
    if (c.corrupt !== undefined && u[3]! < c.corrupt && datagram.length > 0) {
      const bit = Math.floor(u[4]! * datagram.length * 8);
      data = Buffer.from(datagram);
      data[bit >>> 3]! ^= 1 << (bit & 7);
      this.stats.corrupted++;
    }
    // 4. Duplication.
    const copies = c.duplicate !== undefined && u[5]! < c.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    // 5. Bottleneck, delay, jitter, reorder: per copy.
    const out: Delivery[] = [];
    for (let k = 0; k < copies; k++) {
      const departure = this.depart(data.length, now);
      if (departure === null) {
        this.stats.droppedQueue++;
        continue;
      }
      let at = departure + (c.delayMs ?? 0) + u[6 + 2 * k]! * (c.jitterMs ?? 0);
      if (c.reorder !== undefined && u[7 + 2 * k]! < c.reorder) {
        at += this.reorderDelayMs;
        this.stats.reordered++;
      }
      out.push({ at, data });
      this.stats.delivered++;
      this.stats.bytesOut += data.length;
    }
    return out;
  }

  /** The departure time of `size` bytes entering the bottleneck at `now`, or null if tail-dropped. */
  private depart(size: number, now: number): number | null {
    const rate = this.config.rateBitsPerSecond;
    if (!rate) return now;
    this.drain(now);
    if (this.queued + size > this.queueLimit) return null;
    // bits * 1000 / rate rather than bits / rate * 1000: 1250 B at 10 Mbit/s is exactly 1 ms.
    const departure = Math.max(now, this.linkFreeAt) + (size * 8 * 1000) / rate;
    this.linkFreeAt = departure;
    this.departures.push(departure);
    this.sizes.push(size);
    this.queued += size;
    if (this.queued > this.stats.maxQueueBytes) this.stats.maxQueueBytes = this.queued;
    return departure;
  }

  /** Forgets datagrams that have departed by `now`. */
  private drain(now: number): void {
    while (this.head < this.departures.length && this.departures[this.head]! <= now) {
      this.queued -= this.sizes[this.head]!;
      this.head++;
    }
    // Compact now and then so the arrays do not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.departures.length) {
      this.departures = this.departures.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The compact CLI form

const KEYS = ['loss', 'burst', 'dup', 'reorder', 'reorder-delay', 'corrupt', 'delay', 'jitter', 'rate', 'queue'] as const;

/** A plain decimal number: "0.02", "25", "1.5", ".5". */
const NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

function parseProbability(key: string, text: string): number {
  const p = NUMBER.test(text) ? Number(text) : NaN;
  if (!isProbability(p)) throw new Error(`impairment ${key}=${text}: expected a probability in [0, 1] (for example ${key}=0.02)`);
  return p;
}

function parseMs(key: string, text: string): number {
  const m = /^(.*?)(ms)?$/.exec(text);
  const body = m?.[1] ?? '';
  if (!NUMBER.test(body)) throw new Error(`impairment ${key}=${text}: expected milliseconds >= 0 (for example ${key}=25)`);
  return Number(body);
}

/** "100M" → 100e6: decimal suffixes k/K, M, G (bits per second). */
function parseRate(key: string, text: string): number {
  const m = /^([\d.]+)([kKmMgG])?$/.exec(text);
  if (!m || !NUMBER.test(m[1]!)) throw new Error(`impairment ${key}=${text}: expected bits per second with an optional k/M/G suffix (for example ${key}=100M)`);
  const scale = { k: 1e3, m: 1e6, g: 1e9 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * scale);
}

/** "600K" → 614400: binary suffixes K, M, G (optionally followed by B or iB). */
function parseBytes(key: string, text: string): number {
  const m = /^([\d.]+)(?:([kKmMgG])(?:i?[bB])?|[bB])?$/.exec(text);
  if (!m || !NUMBER.test(m[1]!)) throw new Error(`impairment ${key}=${text}: expected bytes with an optional K/M/G suffix (for example ${key}=600K)`);
  const scale = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.floor(Number(m[1]) * scale);
}

/**
 * Parses the compact form, comma-separated key=value pairs:
 *   loss=P  burst=G2B/B2G/LOSSBAD[/LOSSGOOD]  dup=P  reorder=P  reorder-delay=MS  corrupt=P
 *   delay=MS  jitter=MS  rate=BITS[k|M|G] (decimal)  queue=BYTES[K|M|G] (binary)
 * e.g. "loss=0.02,delay=25,jitter=2,rate=100M,queue=600K". An empty string is a perfect wire.
 * Throws an Error naming the bad pair for unknown or repeated keys and out-of-range values.
 */
export function parseImpairment(spec: string): ImpairmentConfig {
  const config: ImpairmentConfig = {};
  const seen = new Set<string>();
  for (const raw of spec.split(',')) {
    const pair = raw.trim();
    if (pair === '') {
      if (spec.trim() === '') continue;
      throw new Error(`impairment "${spec}": empty item (stray comma?)`);
    }
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`impairment "${pair}": expected key=value (keys: ${KEYS.join(', ')})`);
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!(KEYS as readonly string[]).includes(key)) throw new Error(`impairment: unknown key "${key}" (keys: ${KEYS.join(', ')})`);
    if (seen.has(key)) throw new Error(`impairment: "${key}" given twice`);
    seen.add(key);
    switch (key as (typeof KEYS)[number]) {
      case 'loss':
        config.loss = parseProbability(key, value);
        break;
      case 'dup':
        config.duplicate = parseProbability(key, value);
        break;
      case 'reorder':
        config.reorder = parseProbability(key, value);
        break;
      case 'corrupt':
        config.corrupt = parseProbability(key, value);
        break;
      case 'reorder-delay':
        config.reorderDelayMs = parseMs(key, value);
        break;
      case 'delay':
        config.delayMs = parseMs(key, value);
        break;
      case 'jitter':
        config.jitterMs = parseMs(key, value);
        break;
      case 'rate':
        config.rateBitsPerSecond = parseRate(key, value);
        break;
      case 'queue':
        config.queueBytes = parseBytes(key, value);
        break;
      case 'burst': {
        const parts = value.split('/');
        if (parts.length !== 3 && parts.length !== 4) {
          throw new Error(`impairment burst=${value}: expected G2B/B2G/LOSSBAD[/LOSSGOOD] (for example burst=0.01/0.3/0.5)`);
        }
        const [g2b, b2g, lossBad, lossGood] = parts.map((p) => parseProbability('burst', p.trim()));
        config.burst = { pGoodToBad: g2b!, pBadToGood: b2g!, lossInBad: lossBad! };
        if (lossGood !== undefined) config.burst.lossInGood = lossGood;
        break;
      }
    }
  }
  return config;
}
