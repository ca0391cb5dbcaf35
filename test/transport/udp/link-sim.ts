/**
 * A deterministic discrete-event simulation of one bulk UDP flow over a bottleneck link, built
 * from the pure pieces the connection uses, wired the way connection.ts wires them:
 *
 *   sender: Pacer + congestion window decide send times; RateSampler stamps packets;
 *           LossRecovery tracks them; ACKs feed LossRecovery → RateSampler → controller.
 *   link:   a FIFO bottleneck (serialisation at `rate` bytes/ms, a drop-tail queue of
 *           `queueBytes`), then `oneWayMs` of propagation, then seeded random loss.
 *   receiver: AckTracker; an ACK goes back (`oneWayMs`, lossless) whenever one is due.
 *
 * Timers, as in the connection, fire on a millisecond grid (setTimeout); network events are
 * handled at once. Everything is seeded and bounded by a maximum number of events.
 */
import { AckTracker, MAX_ACK_DELAY_MS } from '../../../src/transport/udp/ack-tracker.js';
import {
  DeliveryRateController,
  NewRenoController,
  Pacer,
  RateSampler,
  type CongestionController,
} from '../../../src/transport/udp/congestion.js';
import type { AckBody } from '../../../src/transport/udp/packet.js';
import { LossRecovery, type SentPacket } from '../../../src/transport/udp/recovery.js';
import { mulberry32 } from '../../helpers/seeded.js';
import { EventQueue, sentPacket } from './harness.js';

export interface LinkOptions {
  /** Bottleneck rate, bytes per ms (12,500 = 100 Mbit/s); utilisation is measured against it. */
  rate: number;
  /** The bottleneck rate as a function of time, when it changes (default: `rate` throughout). */
  rateAt?: (now: number) => number;
  oneWayMs: number;
  /** Drop-tail queue in front of the bottleneck, bytes (including the packet being serialised). */
  queueBytes: number;
  /** Random loss after the bottleneck, as a function of time (ms). */
  loss: (now: number) => number;
  durationMs: number;
  seed: number;
  cc?: 'rate' | 'reno';
  /** Datagram size (every packet is this big). */
  mss?: number;
  /** Timer granularity in ms (0: timers fire exactly). */
  timerGranularityMs?: number;
  /** Statistics bucket, ms. */
  bucketMs?: number;
  maxEvents?: number;
  /** Called after every ACK the sender processes. */
  trace?: (now: number, cc: CongestionController, recovery: LossRecovery<number>) => void;
}

export interface Bucket {
  /** Start of the bucket, ms. */
  t: number;
  /** Bytes serialised by the bottleneck in the bucket, as a fraction of its capacity then. */
  utilisation: number;
  /** New (not yet delivered) payload bytes that reached the receiver, as a fraction of capacity. */
  goodput: number;
  /** Controller state at the end of the bucket. */
  bandwidth: number;
  pacingRate: number;
  window: number;
  phase: string;
  bytesInFlight: number;
  /** Bottleneck queue, bytes: the largest (right after a send) and the time-weighted mean. */
  maxQueue: number;
  meanQueue: number;
  overflowDrops: number;
  randomDrops: number;
  declaredLost: number;
  srtt: number;
}

export interface LinkResult {
  buckets: Bucket[];
  phases: Array<{ t: number; phase: string }>;
  sent: number;
  overflowDrops: number;
  randomDrops: number;
  declaredLost: number;
  spurious: number;
  probes: number;
  events: number;
  cc: CongestionController;
  recovery: LossRecovery<number>;
}

type Ev = { kind: 'wake' } | { kind: 'arrive'; pn: number; payload: number } | { kind: 'ack'; body: AckBody } | { kind: 'recvWake' };

export function simulateLink(o: LinkOptions): LinkResult {
  const mss = o.mss ?? 1200;
  const gran = o.timerGranularityMs ?? 1;
  const bucketMs = o.bucketMs ?? 100;
  const maxEvents = o.maxEvents ?? 3_000_000;
  const rand = mulberry32(o.seed);
  const q = new EventQueue<Ev>();

  const recovery = new LossRecovery<number>();
  const sampler = new RateSampler();
  const cc: CongestionController = o.cc === 'reno' ? new NewRenoController(mss) : new DeliveryRateController(mss);
  const pacer = new Pacer(mss);
  const tracker = new AckTracker();

  // The handshake measured the path's RTT, as the connection's constructor is told.
  const handshakeRtt = 2 * o.oneWayMs;
  recovery.rtt.update(handshakeRtt, 0, MAX_ACK_DELAY_MS);
  if (cc instanceof DeliveryRateController) cc.seedRtt(handshakeRtt, 0);
  pacer.setRate(cc.pacingRate, 0);

  // Sender state: payloads are numbered; lost ones go again first.
  let nextPayload = 0;
  const retransmit: number[] = [];
  const acked = new Set<number>();
  const received = new Set<number>();
  let pn = 0;
  let probes = 0;

  // Link state.
  let linkFreeAt = 0;
  let overflowDrops = 0;
  let randomDrops = 0;

  // Timers: the connection arms one setTimeout for the earliest of its deadlines.
  let wakeAt = Infinity;
  let recvWakeAt = Infinity;
  let pacedUntil = -Infinity;
  const timerTime = (at: number, now: number): number => (gran > 0 ? now + Math.max(gran, Math.ceil((at - now) / gran) * gran) : Math.max(at, now));

  // Statistics.
  const buckets: Bucket[] = [];
  const phases: Array<{ t: number; phase: string }> = [];
  let cur = newBucket(0);
  let queueArea = 0;
  let queueAt = 0;
  const phaseOf = (): string => (cc instanceof DeliveryRateController ? cc.phase : 'reno');
  const bandwidthOf = (): number => (cc instanceof DeliveryRateController ? cc.bandwidth : cc.pacingRate / 1.25);
  let lastPhase = phaseOf();
  phases.push({ t: 0, phase: lastPhase });

  function newBucket(t: number): Bucket {
    return {
      t,
      utilisation: 0,
      goodput: 0,
      bandwidth: 0,
      pacingRate: 0,
      window: 0,
      phase: '',
      bytesInFlight: 0,
      maxQueue: 0,
      meanQueue: 0,
      overflowDrops: 0,
      randomDrops: 0,
      declaredLost: 0,
      srtt: 0,
    };
  }
  /** Bucket for an event at `t` (departures are booked in the bucket they happen in). */
  const byTime = new Map<number, Bucket>();
  function bucketFor(t: number): Bucket {
    const start = Math.floor(t / bucketMs) * bucketMs;
    if (start === cur.t) return cur;
    let b = byTime.get(start);
    if (!b) {
      b = newBucket(start);
      byTime.set(start, b);
    }
    return b;
  }
  function closeBucketsUntil(now: number): void {
    while (now >= cur.t + bucketMs) {
      queueArea += queueIntegral(queueAt, cur.t + bucketMs);
      queueAt = cur.t + bucketMs;
      cur.meanQueue = queueArea / bucketMs;
      queueArea = 0;
      cur.bandwidth = bandwidthOf();
      cur.pacingRate = cc.pacingRate;
      cur.window = cc.window;
      cur.phase = phaseOf();
      cur.bytesInFlight = recovery.bytesInFlight;
      cur.declaredLost = recovery.declaredLost;
      cur.srtt = recovery.rtt.smoothed;
      buckets.push(cur);
      const next = byTime.get(cur.t + bucketMs) ?? newBucket(cur.t + bucketMs);
      byTime.delete(cur.t + bucketMs);
      cur = next;
    }
  }
  const rateAt = o.rateAt ?? (() => o.rate);
  function queueBytes(now: number): number {
    return Math.max(0, linkFreeAt - now) * rateAt(now);
  }
  /** ∫ queue dt from a to b while nothing is sent (the queue drains linearly). */
  function queueIntegral(a: number, b: number): number {
    if (linkFreeAt <= a) return 0;
    const x = linkFreeAt - a;
    const y = Math.max(0, linkFreeAt - b);
    return (rateAt(a) * (x * x - y * y)) / 2;
  }
  function noteQueue(now: number): void {
    queueArea += queueIntegral(queueAt, now);
    queueAt = now;
  }

  function transmit(payload: number, now: number): void {
    const p: SentPacket<number> = sentPacket(pn, now, payload, mss);
    sampler.onSent(p, now, recovery.bytesInFlight);
    recovery.onSent(p);
    cc.onSent(mss, now);
    pacer.onSent(mss, now);
    // The bottleneck.
    noteQueue(now);
    if (queueBytes(now) + mss > o.queueBytes) {
      overflowDrops++;
      bucketFor(now).overflowDrops++;
    } else {
      linkFreeAt = Math.max(linkFreeAt, now) + mss / rateAt(now);
      bucketFor(linkFreeAt).utilisation += mss;
      bucketFor(now).maxQueue = Math.max(bucketFor(now).maxQueue, queueBytes(now));
      const arriveAt = linkFreeAt + o.oneWayMs;
      if (rand() < o.loss(linkFreeAt)) {
        randomDrops++;
        bucketFor(linkFreeAt).randomDrops++;
      } else {
        q.push(arriveAt, { kind: 'arrive', pn, payload });
      }
    }
    pn++;
  }

  function nextPayloadToSend(): number {
    while (retransmit.length > 0) {
      const m = retransmit.shift()!;
      if (!acked.has(m)) return m;
    }
    return nextPayload++;
  }

  function onLost(lost: Array<SentPacket<number>>, now: number): void {
    if (lost.length === 0) return;
    cc.onLost(lost, now, recovery.bytesInFlight);
    for (const p of lost) if (!acked.has(p.payload)) retransmit.push(p.payload);
  }

  /** connection.flush(): window first, then the pacer. */
  function flush(now: number): void {
    pacedUntil = -Infinity;
    for (;;) {
      if (recovery.bytesInFlight + mss > cc.window) return;
      if (!pacer.canSend(mss, now)) {
        pacedUntil = pacer.nextSendTime(mss, now);
        return;
      }
      transmit(nextPayloadToSend(), now);
    }
  }

  function arm(now: number): void {
    const at = Math.min(recovery.timerDeadline(), pacedUntil);
    if (at === Infinity) return;
    const t = timerTime(at, now);
    if (t < wakeAt) {
      wakeAt = t;
      q.push(t, { kind: 'wake' });
    }
  }

  /** connection.service() on the sender. */
  function service(now: number): void {
    if (recovery.timerDeadline() <= now) {
      const { lost, probe } = recovery.onTimer(now);
      onLost(lost, now);
      if (probe) {
        probes++;
        for (const p of recovery.oldestInFlight(2)) transmit(p.payload, now);
      }
      pacer.setRate(cc.pacingRate, now);
    }
    flush(now);
    arm(now);
  }

  function onAck(body: AckBody, now: number): void {
    const result = recovery.onAck(body, now);
    for (const p of result.acked) acked.add(p.payload);
    for (const p of result.spurious) acked.add(p.payload);
    const sample = sampler.onAck(result.acked, now, recovery.rtt.min);
    const rtt = recovery.rtt;
    cc.onAck(result.acked, sample, now, { smoothed: rtt.smoothed, min: rtt.min }, recovery.bytesInFlight);
    onLost(result.lost, now);
    pacer.setRate(cc.pacingRate, now);
    service(now);
    o.trace?.(now, cc, recovery);
  }

  function receiverService(now: number): void {
    if (tracker.due(now)) {
      const body = tracker.build(now, Number.MAX_SAFE_INTEGER);
      if (body) q.push(now + o.oneWayMs, { kind: 'ack', body });
    }
    const d = tracker.deadline();
    if (d !== Infinity) {
      const t = timerTime(d, now);
      if (t < recvWakeAt) {
        recvWakeAt = t;
        q.push(t, { kind: 'recvWake' });
      }
    }
  }

  service(0);
  let events = 0;
  for (;;) {
    const e = q.pop();
    if (e === undefined || e.at > o.durationMs) break;
    if (++events > maxEvents) throw new Error(`simulation ran past ${maxEvents} events at t=${e.at}`);
    const now = e.at;
    closeBucketsUntil(now);
    const ev = e.event;
    switch (ev.kind) {
      case 'wake':
        if (now >= wakeAt) wakeAt = Infinity;
        service(now);
        break;
      case 'arrive': {
        tracker.onPacket(ev.pn, true, now);
        if (!received.has(ev.payload)) {
          received.add(ev.payload);
          bucketFor(now).goodput += mss;
        }
        receiverService(now);
        break;
      }
      case 'recvWake':
        if (now >= recvWakeAt) recvWakeAt = Infinity;
        receiverService(now);
        break;
      case 'ack':
        onAck(ev.body, now);
        break;
    }
    const phase = phaseOf();
    if (phase !== lastPhase) {
      phases.push({ t: now, phase });
      lastPhase = phase;
    }
  }
  closeBucketsUntil(o.durationMs);
  for (const b of buckets) {
    const capacity = rateAt(b.t + bucketMs / 2) * bucketMs;
    b.utilisation /= capacity;
    b.goodput /= capacity;
  }
  return {
    buckets,
    phases,
    sent: pn,
    overflowDrops,
    randomDrops,
    declaredLost: recovery.declaredLost,
    spurious: recovery.spurious,
    probes,
    events,
    cc,
    recovery,
  };
}

/** One line per bucket, for failure messages and reports. */
export function describeRun(r: LinkResult, everyMs = 250, bucketMs = 100): string {
  const lines = [`phases: ${r.phases.map((p) => `${p.phase}@${p.t.toFixed(1)}`).join(' → ')}`];
  lines.push(`sent ${r.sent}, overflow drops ${r.overflowDrops}, random drops ${r.randomDrops}, declared lost ${r.declaredLost}, spurious ${r.spurious}, probes ${r.probes}`);
  lines.push('t(ms)   util  goodput  bw(B/ms) pacing  window   inflight  maxQ    meanQ   ovfl rnd  phase  srtt');
  const step = Math.max(1, Math.round(everyMs / bucketMs));
  for (let i = 0; i < r.buckets.length; i += step) {
    const b = r.buckets[i]!;
    lines.push(
      [
        String(b.t).padStart(6),
        b.utilisation.toFixed(3).padStart(6),
        b.goodput.toFixed(3).padStart(7),
        b.bandwidth.toFixed(0).padStart(9),
        b.pacingRate.toFixed(0).padStart(7),
        b.window.toFixed(0).padStart(8),
        String(b.bytesInFlight).padStart(9),
        b.maxQueue.toFixed(0).padStart(7),
        b.meanQueue.toFixed(0).padStart(7),
        String(b.overflowDrops).padStart(5),
        String(b.randomDrops).padStart(4),
        b.phase.padStart(7),
        b.srtt.toFixed(1).padStart(6),
      ].join(' '),
    );
  }
  return lines.join('\n');
}
