/**
 * Congestion control and the delivery-rate samples it feeds on. Pure: every call takes `now` (ms).
 *
 * - `DeliveryRateController` (the default, in the spirit of BBR): measures the bottleneck's
 *   delivery rate and the path's minimum RTT and paces at that rate, probing for more now and
 *   then. It does not treat a random loss as congestion, so 2% loss does not halve it; only a
 *   round with heavy loss (a queue overflowing) makes it back off.
 * - `NewRenoController` (`--cc reno`): RFC 9002 §7, a window halved on each loss episode.
 *
 * Rates are in bytes per millisecond internally (1 B/ms = 1000 B/s).
 */
import { MAX_ACK_DELAY_MS } from './ack-tracker.js';
import type { SentPacket } from './recovery.js';

export interface RateSample {
  /** Bytes per millisecond delivered over the sample's interval. */
  rate: number;
  /** The packet that ended the sample was sent while the sender had nothing to send. */
  appLimited: boolean;
  /** Delivered count when the acknowledged packet was sent (starts rounds). */
  priorDelivered: number;
  rtt: number;
}

/**
 * Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation): each packet remembers
 * how much had been delivered when it was sent; its ACK then tells how fast data got through.
 */
export class RateSampler {
  delivered = 0;
  private deliveredAt = 0;
  private firstSentAt = 0;
  /** Non-zero while the sender is application-limited: the delivered count at which that ends. */
  private appLimitedUntil = 0;

  /** Stamps a packet about to be sent. */
  onSent(p: SentPacket, now: number, bytesInFlight: number): void {
    if (bytesInFlight === 0) {
      this.firstSentAt = now;
      this.deliveredAt = now;
    }
    p.delivered = this.delivered;
    p.deliveredAt = this.deliveredAt;
    p.firstSentAt = this.firstSentAt;
    p.appLimited = this.appLimitedUntil !== 0;
  }

  /** The sender ran out of data with room in the window: samples until now are app-limited. */
  markAppLimited(bytesInFlight: number): void {
    this.appLimitedUntil = Math.max(this.delivered + bytesInFlight, 1);
  }

  /** Packets newly acknowledged by one ACK (number order); returns a sample, or null if none is usable. */
  onAck(acked: SentPacket[], now: number, minRtt: number): RateSample | null {
    let newest: SentPacket | null = null;
    for (const p of acked) {
      this.delivered += p.size;
      this.deliveredAt = now;
      if (newest === null || p.delivered > newest.delivered || (p.delivered === newest.delivered && p.sentAt > newest.sentAt)) newest = p;
    }
    if (newest === null) return null;
    if (this.appLimitedUntil !== 0 && this.delivered > this.appLimitedUntil) this.appLimitedUntil = 0;
    this.firstSentAt = newest.sentAt;
    const sendElapsed = newest.sentAt - newest.firstSentAt;
    const ackElapsed = now - newest.deliveredAt;
    const interval = Math.max(sendElapsed, ackElapsed);
    // An interval shorter than the minimum RTT would overstate the rate (ACK compression).
    if (interval <= 0 || (Number.isFinite(minRtt) && interval < minRtt)) return null;
    return { rate: (this.delivered - newest.delivered) / interval, appLimited: newest.appLimited, priorDelivered: newest.delivered, rtt: now - newest.sentAt };
  }
}

export interface CongestionController {
  readonly name: 'rate' | 'reno';
  /** Bytes that may be in flight. */
  readonly window: number;
  /** Pacing rate in bytes per millisecond. */
  readonly pacingRate: number;
  onSent(bytes: number, now: number): void;
  onAck(acked: SentPacket[], sample: RateSample | null, now: number, rtt: { smoothed: number; min: number }, bytesInFlight: number): void;
  onLost(lost: SentPacket[], now: number, bytesInFlight: number): void;
}

/**
 * Never less than this in flight: a full ACK's worth even on the fastest path, or the receiver
 * would hold every ACK for its full delay (on slower paths it acknowledges more often, see
 * AckTracker). Not more: on a slow link the floor is a standing queue.
 */
export const MIN_WINDOW_PACKETS = 64;
/** The window before any measurement: the minimum (an initial window below it would grow on the first loss). */
export const INITIAL_WINDOW_PACKETS = MIN_WINDOW_PACKETS;

/** RFC 9002 §7 NewReno with pacing at 1.25 × window / RTT (§7.7). */
export class NewRenoController implements CongestionController {
  readonly name = 'reno' as const;
  window: number;
  private ssthresh = Infinity;
  private recoveryStart = -Infinity;
  private smoothed = 100;

  constructor(private readonly mss: number) {
    this.window = INITIAL_WINDOW_PACKETS * mss;
  }

  get pacingRate(): number {
    return (1.25 * this.window) / Math.max(this.smoothed, 1);
  }

  onSent(): void {}

  onAck(acked: SentPacket[], _sample: RateSample | null, _now: number, rtt: { smoothed: number }): void {
    this.smoothed = rtt.smoothed;
    for (const p of acked) {
      if (p.sentAt <= this.recoveryStart) continue;
      if (this.window < this.ssthresh) this.window += p.size;
      else this.window += (this.mss * p.size) / this.window;
    }
  }

  onLost(lost: SentPacket[], now: number): void {
    const newest = lost[lost.length - 1];
    // One reduction per loss episode: losses of packets sent before the last reduction do not count again.
    if (!newest || newest.sentAt <= this.recoveryStart) return;
    this.recoveryStart = now;
    this.ssthresh = Math.max(this.window / 2, MIN_WINDOW_PACKETS * this.mss);
    this.window = this.ssthresh;
  }
}

/** Max of the samples in the last `length` rounds. */
class WindowedMax {
  private samples: Array<{ round: number; value: number }> = [];

  constructor(private readonly length: number) {}

  update(value: number, round: number): void {
    // Keep a descending list: a new sample removes older, smaller ones.
    while (this.samples.length > 0 && this.samples[this.samples.length - 1]!.value <= value) this.samples.pop();
    this.samples.push({ round, value });
    while (this.samples[0]!.round <= round - this.length) this.samples.shift();
  }

  get value(): number {
    return this.samples[0]?.value ?? 0;
  }

  expire(round: number): void {
    while (this.samples.length > 1 && this.samples[0]!.round <= round - this.length) this.samples.shift();
  }
}

const STARTUP_GAIN = 2.885; // 2/ln 2
const PROBE_GAINS = [1.25, 0.75, 1, 1, 1, 1, 1, 1];
/**
 * In-flight data as a multiple of the path's BDP. BBR uses 2; 1.5 still covers the 1.25× probe,
 * and keeps the queue we can build at a bottleneck below half a BDP when the rate estimate runs
 * a little high, so a shallow bottleneck buffer does not overflow in the cruise phases.
 */
const CWND_GAIN = 1.5;
const BW_WINDOW_ROUNDS = 10;
const MIN_RTT_WINDOW_MS = 10_000;
/** Startup ends when the bandwidth grew less than this over FULL_BW_ROUNDS rounds. */
const FULL_BW_GROWTH = 1.25;
const FULL_BW_ROUNDS = 3;
/** A round losing more than this fraction of its packets means a queue overflowed, not random loss. */
const HEAVY_LOSS = 0.15;
const MIN_PACING_PACKETS = 4;
/**
 * A round lasts at least this long. On loopback a round trip takes a fraction of a millisecond,
 * less than ACKs are held and timers resolve, so rounds that short would measure noise.
 */
const MIN_ROUND_MS = 4;
/** RFC 9406: RTT samples per round before the delay check, and the bounds of the RTT rise that ends startup. */
const HYSTART_SAMPLES = 8;
const HYSTART_MIN_MS = 4;
const HYSTART_MAX_MS = 16;
/**
 * Added to the minimum RTT when sizing the window: ACKs arrive in batches (every ACK_EVERY
 * packets or MAX_ACK_DELAY_MS) and timers fire about once a millisecond, so data keeps flowing
 * only if the window covers that wait too.
 */
const ACK_ALLOWANCE_MS = MAX_ACK_DELAY_MS + 2;

type Phase = 'startup' | 'drain' | 'probe';

/** A delivery-rate controller in the spirit of BBR (v1, with a loss ceiling from v2). */
export class DeliveryRateController implements CongestionController {
  readonly name = 'rate' as const;
  phase: Phase = 'startup';
  private readonly maxBw = new WindowedMax(BW_WINDOW_ROUNDS);
  private minRtt = Infinity;
  private minRttAt = 0;
  private round = 0;
  private roundStart = -Infinity;
  private nextRoundDelivered = 0;
  private delivered = 0;
  private fullBw = 0;
  private fullBwRounds = 0;
  private cycleIndex = 0;
  private cycleStart = 0;
  private initialWindow: number;
  private windowGrowth: number;
  private roundSent = 0;
  private roundLost = 0;
  private roundMinRtt = Infinity;
  private lastRoundMinRtt = Infinity;
  private roundRttSamples = 0;
  /** After a heavy-loss round: a ceiling on the rate (bytes/ms), raised again as probing succeeds. */
  private ceiling = Infinity;
  /**
   * The highest rate paced at so far in startup, which never lowers it (as Linux's tcp_bbr cuts
   * its pacing rate only once the pipe is full): the first samples come from a receiver that is
   * still starting up (on loopback, a JIT still compiling its hot paths) and would otherwise hold
   * the sender to a few packets per millisecond for its first tens of milliseconds.
   */
  private startupRate = 0;

  constructor(private readonly mss: number) {
    this.initialWindow = INITIAL_WINDOW_PACKETS * mss;
    this.windowGrowth = this.initialWindow;
  }

  /** Estimated bottleneck rate, bytes/ms. */
  get bandwidth(): number {
    return Math.min(this.maxBw.value, this.ceiling);
  }

  /** Bandwidth × delay, the delay including what ACK batching adds. */
  private get bdp(): number {
    if (!Number.isFinite(this.minRtt) || this.bandwidth === 0) return this.initialWindow;
    return this.bandwidth * (this.minRtt + ACK_ALLOWANCE_MS);
  }

  /** Bandwidth × minimum RTT: what the path holds with no queue; draining aims at it. */
  private get pipe(): number {
    if (!Number.isFinite(this.minRtt) || this.bandwidth === 0) return this.initialWindow;
    return this.bandwidth * this.minRtt;
  }

  private get pacingGain(): number {
    if (this.phase === 'startup') return STARTUP_GAIN;
    if (this.phase === 'drain') return 1 / STARTUP_GAIN;
    return PROBE_GAINS[this.cycleIndex]!;
  }

  get pacingRate(): number {
    const rate = this.phase === 'startup' ? Math.max(this.startupRate, this.estimatedRate()) : this.estimatedRate();
    // At least a few packets per round trip, whatever the estimate says, so nothing can stall.
    return Math.max(rate, (MIN_PACING_PACKETS * this.mss) / Math.max(Number.isFinite(this.minRtt) ? this.minRtt : 100, 1));
  }

  /** Remembers startup's rate before an update can lower it (see startupRate). */
  private holdStartupRate(): void {
    if (this.phase === 'startup') this.startupRate = Math.max(this.startupRate, this.estimatedRate());
  }

  private estimatedRate(): number {
    const bw = this.bandwidth;
    if (bw === 0) {
      // No sample yet: the initial window over the handshake RTT (or 1 ms on a fast path).
      const rtt = Number.isFinite(this.minRtt) ? Math.max(this.minRtt, 1) : 100;
      return (STARTUP_GAIN * this.initialWindow) / rtt;
    }
    return this.pacingGain * bw;
  }

  get window(): number {
    const floor = MIN_WINDOW_PACKETS * this.mss;
    if (this.phase === 'startup') return Math.max(this.windowGrowth, floor);
    return Math.max(CWND_GAIN * this.bdp + 3 * this.mss, floor);
  }

  /** Seeds the minimum RTT (from the handshake) before any ACK. */
  seedRtt(rttMs: number, now: number): void {
    this.holdStartupRate();
    if (rttMs < this.minRtt) {
      this.minRtt = rttMs;
      this.minRttAt = now;
    }
  }

  onSent(bytes: number): void {
    this.roundSent += bytes;
  }

  onAck(acked: SentPacket[], sample: RateSample | null, now: number, _rtt: { smoothed: number; min: number }, bytesInFlight: number): void {
    this.holdStartupRate();
    for (const p of acked) this.delivered += p.size;
    let roundStarted = false;
    if (sample && sample.priorDelivered >= this.nextRoundDelivered && now - this.roundStart >= MIN_ROUND_MS) {
      this.nextRoundDelivered = this.delivered;
      this.roundStart = now;
      this.round++;
      roundStarted = true;
      this.endRound();
      if (this.roundRttSamples >= HYSTART_SAMPLES) this.lastRoundMinRtt = this.roundMinRtt;
      this.roundMinRtt = Infinity;
      this.roundRttSamples = 0;
    }
    if (sample && this.phase === 'startup' && sample.rtt > 0) this.checkDelay(sample.rtt);
    if (sample) {
      if (sample.rtt > 0 && (sample.rtt <= this.minRtt || now - this.minRttAt > MIN_RTT_WINDOW_MS)) {
        this.minRtt = sample.rtt;
        this.minRttAt = now;
      }
      if (!sample.appLimited || sample.rate >= this.maxBw.value) {
        this.maxBw.update(sample.rate, this.round);
        // Delivering above the ceiling proves the path can take it.
        if (sample.rate > this.ceiling) this.ceiling = Math.max(this.ceiling * 1.25, sample.rate);
      }
    }
    this.maxBw.expire(this.round);
    if (this.phase === 'startup') {
      for (const p of acked) this.windowGrowth += p.size;
      this.windowGrowth = Math.min(this.windowGrowth, Math.max(STARTUP_GAIN * this.bdp, this.initialWindow));
      if (roundStarted) this.checkFullBandwidth();
    }
    if (this.phase === 'drain' && bytesInFlight <= this.pipe) this.enterProbe(now);
    if (this.phase === 'probe') this.advanceCycle(now, bytesInFlight);
  }

  /**
   * HyStart++ (RFC 9406 §4.2) as a second way out of startup: when the smallest RTT of a round
   * rises clearly above the last round's, a queue is building, and waiting the three rounds the
   * bandwidth plateau takes would overflow a shallow bottleneck buffer.
   */
  private checkDelay(rtt: number): void {
    this.roundMinRtt = Math.min(this.roundMinRtt, rtt);
    this.roundRttSamples++;
    if (this.roundRttSamples < HYSTART_SAMPLES || !Number.isFinite(this.lastRoundMinRtt)) return;
    const threshold = Math.min(Math.max(this.lastRoundMinRtt / 8, HYSTART_MIN_MS), HYSTART_MAX_MS);
    if (this.roundMinRtt >= this.lastRoundMinRtt + threshold) this.phase = 'drain';
  }

  private checkFullBandwidth(): void {
    const bw = this.maxBw.value;
    if (bw >= this.fullBw * FULL_BW_GROWTH) {
      this.fullBw = bw;
      this.fullBwRounds = 0;
      return;
    }
    if (++this.fullBwRounds >= FULL_BW_ROUNDS) this.phase = 'drain';
  }

  private enterProbe(now: number): void {
    this.phase = 'probe';
    this.cycleIndex = 1; // start by draining what startup queued
    this.cycleStart = now;
  }

  private advanceCycle(now: number, bytesInFlight: number): void {
    const rtt = Number.isFinite(this.minRtt) ? Math.max(this.minRtt, MIN_ROUND_MS) : 100;
    const elapsed = now - this.cycleStart > rtt;
    const gain = PROBE_GAINS[this.cycleIndex]!;
    // Probing up lasts a round trip; draining ends early once the queue is gone.
    if ((gain > 1 && elapsed) || (gain < 1 && (elapsed || bytesInFlight <= this.pipe)) || (gain === 1 && elapsed)) {
      this.cycleIndex = (this.cycleIndex + 1) % PROBE_GAINS.length;
      this.cycleStart = now;
    }
  }

  /** A round ended: a round with heavy loss (a queue overflowing) caps the rate at what got through. */
  private endRound(): void {
    const sent = this.roundSent;
    const lost = this.roundLost;
    this.roundSent = 0;
    this.roundLost = 0;
    if (sent > 20 * this.mss && lost > HEAVY_LOSS * sent) {
      // Never below a quarter of what was measured: heavy random loss must slow us, not stop us.
      this.ceiling = Math.max(Math.min(this.ceiling, this.maxBw.value) * (1 - lost / sent / 2), this.maxBw.value / 4);
      if (this.phase === 'startup') this.phase = 'drain';
    } else if (Number.isFinite(this.ceiling)) {
      // A round without heavy loss: let the ceiling rise again.
      this.ceiling *= 1.25;
      if (this.ceiling > 4 * this.maxBw.value) this.ceiling = Infinity;
    }
  }

  onLost(lost: SentPacket[]): void {
    for (const p of lost) this.roundLost += p.size;
    // Startup sends at almost 3× the rate it measured: once a queue overflows, every round trip
    // spent finding out costs a window of drops. Leave at the first sign of it, not at the round's end.
    if (this.phase === 'startup' && this.roundSent > 20 * this.mss && this.roundLost > HEAVY_LOSS * this.roundSent) this.phase = 'drain';
  }
}

/**
 * Paced sending: a token bucket filled at the pacing rate, holding at most a couple of
 * milliseconds of sending (timers fire about once a millisecond), so the receiver's socket
 * buffer sees small, even bursts instead of a window at once.
 */
export class Pacer {
  private tokens: number;
  private last = 0;
  private rate = 0;
  private readonly capacityMs: number;

  constructor(
    private readonly mss: number,
    options: { capacityMs?: number } = {},
  ) {
    this.capacityMs = options.capacityMs ?? 2;
    this.tokens = 10 * mss;
  }

  private get capacity(): number {
    return Math.min(Math.max(this.rate * this.capacityMs, 10 * this.mss), 2 * 1024 * 1024);
  }

  /** Sets the rate (bytes per millisecond), refilling at the old rate up to `now` first. */
  setRate(rate: number, now: number): void {
    this.refill(now);
    this.rate = rate;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.rate);
      this.last = now;
    }
  }

  /** True when a packet of `size` bytes may go now. */
  canSend(size: number, now: number): boolean {
    this.refill(now);
    // The tolerance absorbs float rounding: at nextSendTime() the packet must be allowed.
    return this.tokens >= size - 1e-6 || this.tokens >= this.capacity;
  }

  onSent(size: number, now: number): void {
    this.refill(now);
    this.tokens -= size;
  }

  /** When a packet of `size` bytes may go (now if it may already). */
  nextSendTime(size: number, now: number): number {
    this.refill(now);
    if (this.tokens >= size || this.rate <= 0) return now;
    return now + (size - this.tokens) / this.rate;
  }
}
