/**
 * Test helpers for the UDP reliability layer: SentPacket records, ACK bodies by hand, and a
 * small deterministic event queue for fake-clock simulations (ties broken by insertion order).
 */
import type { AckBody } from '../../../src/transport/udp/packet.js';
import { newSentPacket, type SentPacket } from '../../../src/transport/udp/recovery.js';

/** A SentPacket as the connection builds it (argument order kept from the tests' point of view). */
export function sentPacket<T>(pn: number, sentAt: number, payload: T, size = 1200, ackEliciting = true): SentPacket<T> {
  return newSentPacket(pn, sentAt, size, payload, ackEliciting);
}

/** An ACK body from inclusive [start, end] ranges, newest first. */
export function ackOf(ranges: Array<[number, number]>, ackDelayMicros = 0): AckBody {
  return {
    largest: ranges[0]![1],
    ackDelayMicros,
    maxData: 0,
    ranges: ranges.map(([start, end]) => ({ start, end })),
  };
}

/** A min-heap of timed events; equal times come out in the order they went in. */
export class EventQueue<E> {
  private heap: Array<{ at: number; seq: number; event: E }> = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(at: number, event: E): void {
    const h = this.heap;
    h.push({ at, seq: this.seq++, event });
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  peekTime(): number {
    return this.heap[0]?.at ?? Infinity;
  }

  pop(): { at: number; event: E } | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return { at: top.at, event: top.event };
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }
}
