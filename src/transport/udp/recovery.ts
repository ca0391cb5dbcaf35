/**
 * The sending side of acknowledgements: packets in flight, what an ACK acknowledges, loss
 * detection (RFC 9002 §6.1: three packets later acknowledged, or 9/8 of an RTT older than one)
 * and the probe timeout with exponential backoff (§6.2). Pure: every call takes `now` (ms).
 *
 * Packet numbers rise with every packet sent, so packets sit in one array sorted by number;
 * acknowledged ones are marked and the front is dropped as it resolves. A packet declared lost
 * stays (marked) for a while, so a late ACK for it is recognised as a spurious retransmission.
 */
import { MAX_ACK_DELAY_MS } from './ack-tracker.js';
import type { AckBody } from './packet.js';
import { RttEstimator } from './rtt.js';

/** RFC 9002 kPacketThreshold. */
export const PACKET_THRESHOLD = 3;
/** How long a packet declared lost is remembered, in smoothed RTTs (at least LOST_MEMORY_MIN_MS). */
const LOST_MEMORY_RTTS = 4;
const LOST_MEMORY_MIN_MS = 200;
/** Send times of ACK-only packets remembered for RTT samples. */
const ACK_ONLY_MEMORY = 64;

export interface SentPacket<T = unknown> {
  pn: number;
  sentAt: number;
  /** Datagram bytes; what counts against the congestion window. */
  size: number;
  ackEliciting: boolean;
  /** Counted in bytes in flight (ack-eliciting and not yet acknowledged or lost). */
  inFlight: boolean;
  acked: boolean;
  lost: boolean;
  lostAt: number;
  /** What the packet carried, for retransmission. */
  payload: T;
  /** Delivery-rate state when it was sent (see congestion.ts). */
  delivered: number;
  deliveredAt: number;
  firstSentAt: number;
  appLimited: boolean;
}

/** A record of a packet about to be sent: in flight if ack-eliciting, not yet acknowledged or lost. */
export function newSentPacket<T>(pn: number, sentAt: number, size: number, payload: T, ackEliciting = true): SentPacket<T> {
  return {
    pn,
    sentAt,
    size,
    ackEliciting,
    inFlight: ackEliciting,
    acked: false,
    lost: false,
    lostAt: 0,
    payload,
    delivered: 0,
    deliveredAt: 0,
    firstSentAt: 0,
    appLimited: false,
  };
}

export interface AckResult<T> {
  /** Newly acknowledged packets, in packet-number order. */
  acked: Array<SentPacket<T>>;
  /** Packets declared lost by this ACK (not yet acknowledged, not retransmitted yet). */
  lost: Array<SentPacket<T>>;
  /** Packets acknowledged after being declared lost: their retransmission was not needed. */
  spurious: Array<SentPacket<T>>;
  /** The newest acknowledged packet, when this ACK newly acknowledged it (an RTT sample). */
  largestNewlyAcked: SentPacket<T> | null;
}

export class LossRecovery<T> {
  readonly rtt = new RttEstimator();
  bytesInFlight = 0;
  largestAcked = -1;
  /** Probe timeouts since the last ACK that acknowledged something new. */
  ptoCount = 0;
  /** Totals for statistics. */
  declaredLost = 0;
  spurious = 0;

  private sent: Array<SentPacket<T>> = [];
  private head = 0;
  /** Index of the first packet that is neither acknowledged nor lost (the loss scan starts here). */
  private unresolved = 0;
  private lastAckElicitingAt = -Infinity;
  private ackElicitingInFlight = 0;
  private lossTime = Infinity;
  private readonly ackOnlySentAt = new Map<number, number>();
  /** Packets declared lost, in packet-number order (they are moved here in order), from lostHead on. */
  private lostMemory: Array<SentPacket<T>> = [];
  private lostHead = 0;

  constructor(private readonly maxAckDelayMs = MAX_ACK_DELAY_MS) {}

  /**
   * Records when a packet that is not tracked (an ACK) was sent: the peer's ACK may name it as its
   * largest, and its send time is then what the RTT sample needs. The newest few are kept.
   */
  onSentAckOnly(pn: number, now: number): void {
    this.ackOnlySentAt.set(pn, now);
    if (this.ackOnlySentAt.size > ACK_ONLY_MEMORY) {
      const oldest = this.ackOnlySentAt.keys().next().value;
      if (oldest !== undefined) this.ackOnlySentAt.delete(oldest);
    }
  }

  onSent(p: SentPacket<T>): void {
    const last = this.sent[this.sent.length - 1];
    if (last && p.pn <= last.pn) throw new RangeError(`packet number ${p.pn} sent after ${last.pn}`);
    this.sent.push(p);
    if (p.inFlight) this.bytesInFlight += p.size;
    if (p.ackEliciting) {
      this.lastAckElicitingAt = p.sentAt;
      this.ackElicitingInFlight++;
    }
  }

  /** Processes an ACK received at `now`. */
  onAck(ack: AckBody, now: number): AckResult<T> {
    const result: AckResult<T> = { acked: [], lost: [], spurious: [], largestNewlyAcked: null };
    // Ranges come newest first; walk them oldest first so `acked` ends up in number order.
    for (let i = ack.ranges.length - 1; i >= 0; i--) {
      const range = ack.ranges[i]!;
      this.ackLost(range.start, range.end, result);
      for (let k = this.indexOf(range.start); k < this.sent.length; k++) {
        const p = this.sent[k]!;
        if (p.pn > range.end) break;
        if (p.acked) continue;
        p.acked = true;
        if (p.lost) {
          this.spurious++;
          result.spurious.push(p);
          continue;
        }
        this.release(p);
        result.acked.push(p);
      }
    }
    const newest = result.acked[result.acked.length - 1];
    if (newest && newest.pn === ack.largest) result.largestNewlyAcked = newest;
    // RFC 9002 §5.1: a sample when the largest acknowledged is newly acknowledged and something
    // ack-eliciting is among the newly acknowledged. The largest may be one of our ACK-only packets.
    const largestSentAt = result.largestNewlyAcked?.sentAt ?? (ack.largest > this.largestAcked ? this.ackOnlySentAt.get(ack.largest) : undefined);
    if (largestSentAt !== undefined && result.acked.some((p) => p.ackEliciting)) {
      this.rtt.update(now - largestSentAt, ack.ackDelayMicros / 1000, this.maxAckDelayMs);
    }
    if (ack.largest > this.largestAcked) this.largestAcked = ack.largest;
    if (result.acked.length > 0) this.ptoCount = 0;
    result.lost = this.detectLost(now);
    this.compact(now);
    return result;
  }

  private release(p: SentPacket<T>): void {
    if (p.inFlight) {
      p.inFlight = false;
      this.bytesInFlight -= p.size;
    }
    if (p.ackEliciting) this.ackElicitingInFlight--;
  }

  /** First index in the array whose packet number is >= pn. */
  private indexOf(pn: number): number {
    let lo = this.head;
    let hi = this.sent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sent[mid]!.pn < pn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** RFC 9002 §6.1: packets below the largest acknowledged that are too old or too far behind. */
  private detectLost(now: number): Array<SentPacket<T>> {
    const lost: Array<SentPacket<T>> = [];
    this.lossTime = Infinity;
    if (this.largestAcked < 0) return lost;
    const delay = this.rtt.lossDelay();
    for (let k = this.unresolved; k < this.sent.length; k++) {
      const p = this.sent[k]!;
      if (p.pn > this.largestAcked) break;
      if (p.acked || p.lost) continue;
      if (this.largestAcked - p.pn >= PACKET_THRESHOLD || p.sentAt <= now - delay) {
        p.lost = true;
        p.lostAt = now;
        this.release(p);
        this.declaredLost++;
        lost.push(p);
      } else {
        this.lossTime = Math.min(this.lossTime, p.sentAt + delay);
      }
    }
    return lost;
  }

  /** Packets declared lost in [start, end] that an ACK now names: spurious losses. */
  private ackLost(start: number, end: number, result: AckResult<T>): void {
    const lost = this.lostMemory;
    let lo = this.lostHead;
    let hi = lost.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (lost[mid]!.pn < start) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < lost.length && lost[k]!.pn <= end; k++) {
      const p = lost[k]!;
      if (p.acked) continue;
      p.acked = true;
      this.spurious++;
      result.spurious.push(p);
    }
  }

  /**
   * Drops resolved packets from the front. Lost ones move to a memory of their own (kept a few
   * RTTs, for spurious-loss detection), so one old loss never makes every ACK walk the packets
   * acknowledged since.
   */
  private compact(now: number): void {
    while (this.unresolved < this.sent.length) {
      const p = this.sent[this.unresolved]!;
      if (!p.acked && !p.lost) break;
      this.unresolved++;
    }
    while (this.head < this.unresolved) {
      const p = this.sent[this.head]!;
      if (p.lost && !p.acked) this.lostMemory.push(p);
      this.head++;
    }
    if (this.head > 4096 && this.head * 2 > this.sent.length) {
      this.sent = this.sent.slice(this.head);
      this.unresolved -= this.head;
      this.head = 0;
    }
    const memory = Math.max(LOST_MEMORY_RTTS * this.rtt.smoothed, LOST_MEMORY_MIN_MS);
    const lost = this.lostMemory;
    while (this.lostHead < lost.length && (lost[this.lostHead]!.acked || now - lost[this.lostHead]!.lostAt >= memory)) this.lostHead++;
    if (this.lostHead > 1024 && this.lostHead * 2 > lost.length) {
      this.lostMemory = lost.slice(this.lostHead);
      this.lostHead = 0;
    }
  }

  /** The probe timeout (§6.2.1) with its backoff. */
  ptoDuration(): number {
    return this.rtt.pto(this.maxAckDelayMs) * 2 ** Math.min(this.ptoCount, 16);
  }

  /** When the loss-detection timer fires: the earliest time-threshold loss, else the probe timeout; Infinity when idle. */
  timerDeadline(): number {
    if (this.lossTime !== Infinity) return this.lossTime;
    if (this.ackElicitingInFlight === 0) return Infinity;
    return this.lastAckElicitingAt + this.ptoDuration();
  }

  /**
   * The timer fired at `now`. Returns packets lost by the time threshold, or, when it was the
   * probe timeout, `probe: true`: the caller sends one or two ack-eliciting probes (RFC 9002 §6.2.4).
   */
  onTimer(now: number): { lost: Array<SentPacket<T>>; probe: boolean } {
    if (this.lossTime !== Infinity && this.lossTime <= now) {
      const lost = this.detectLost(now);
      this.compact(now);
      return { lost, probe: false };
    }
    if (this.timerDeadline() <= now) {
      this.ptoCount++;
      return { lost: [], probe: true };
    }
    return { lost: [], probe: false };
  }

  /** The oldest packets still in flight (for probes: their payloads are sent again in new packets). */
  oldestInFlight(count: number): Array<SentPacket<T>> {
    const out: Array<SentPacket<T>> = [];
    for (let k = this.unresolved; k < this.sent.length && out.length < count; k++) {
      const p = this.sent[k]!;
      if (!p.acked && !p.lost && p.ackEliciting) out.push(p);
    }
    return out;
  }

  /** The payloads of every packet neither acknowledged nor declared lost. */
  *inFlightPayloads(): Generator<T> {
    for (let k = this.unresolved; k < this.sent.length; k++) {
      const p = this.sent[k]!;
      if (!p.acked && !p.lost) yield p.payload;
    }
  }

  /** Packets in flight at all (acknowledgement pending). */
  get inFlightCount(): number {
    return this.ackElicitingInFlight;
  }
}
