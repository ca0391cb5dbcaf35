/**
 * Round-trip time estimation, RFC 9002 §5: the latest sample, a smoothed RTT and its variance,
 * and the minimum seen. Pure: samples carry their own times, nothing reads a clock.
 */

/** RFC 9002's initial RTT, used until the first sample (the handshake usually gives one). */
export const INITIAL_RTT_MS = 333;
/** Timer granularity (RFC 9002 kGranularity). */
export const GRANULARITY_MS = 1;

export class RttEstimator {
  latest = 0;
  smoothed = INITIAL_RTT_MS;
  variance = INITIAL_RTT_MS / 2;
  min = Infinity;
  private sampled = false;

  get hasSample(): boolean {
    return this.sampled;
  }

  /**
   * Takes one sample: `rttMs` from sending a packet to receiving the ACK that newly
   * acknowledged it (the largest in that ACK), and the `ackDelayMs` the peer says it held the ACK.
   * `maxAckDelayMs` caps the ack delay the peer may claim.
   */
  update(rttMs: number, ackDelayMs: number, maxAckDelayMs: number): void {
    if (!(rttMs >= 0)) return;
    this.latest = rttMs;
    this.min = Math.min(this.min, rttMs);
    if (!this.sampled) {
      this.sampled = true;
      this.smoothed = rttMs;
      this.variance = rttMs / 2;
      return;
    }
    // The ack delay is subtracted only where that does not take the sample below the minimum.
    let adjusted = rttMs;
    const delay = Math.min(Math.max(ackDelayMs, 0), maxAckDelayMs);
    if (rttMs >= this.min + delay) adjusted = rttMs - delay;
    this.variance = 0.75 * this.variance + 0.25 * Math.abs(this.smoothed - adjusted);
    this.smoothed = 0.875 * this.smoothed + 0.125 * adjusted;
  }

  /** RFC 9002 §6.2.1: smoothed_rtt + max(4·rttvar, granularity) + max_ack_delay, before backoff. */
  pto(maxAckDelayMs: number): number {
    return this.smoothed + Math.max(4 * this.variance, GRANULARITY_MS) + maxAckDelayMs;
  }

  /** RFC 9002 §6.1.2: a packet sent this long before a later one was acknowledged is lost. */
  lossDelay(): number {
    return Math.max((9 / 8) * Math.max(this.smoothed, this.latest), GRANULARITY_MS);
  }
}
