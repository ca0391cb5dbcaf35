/**
 * UdpConnection fed packets by hand (no socket): what it delivers to the transfer layer and what
 * it acknowledges. Waits on the connection's own output, never on sleeps.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { UdpConnection } from '../../../src/transport/udp/connection.js';
import { decodePacket, type Packet, type PacketBody } from '../../../src/transport/udp/packet.js';

const SESSION = 0xabcdefn;
let connection: UdpConnection | null = null;

afterEach(() => {
  connection?.destroy();
  connection = null;
});

/** A connection whose datagrams land in `sent`; `nextAck()` resolves with the next ACK it sends. */
function open() {
  const sent: Packet[] = [];
  const waiting: Array<(p: Packet) => void> = [];
  connection = new UdpConnection({
    session: SESSION,
    remote: '127.0.0.1:1',
    datagramSize: 1200,
    peerDatagramSize: 1200,
    peerWindow: 1 << 24,
    cc: 'rate',
    rateLimit: 0,
    output: (buf) => {
      const d = decodePacket(buf);
      if (!d.ok) throw new Error(`the connection sent a malformed packet: ${d.reason}`);
      sent.push(d.packet);
      if (d.packet.body.type === 'ack') for (const w of waiting.splice(0)) w(d.packet);
    },
  });
  const nextAck = () => new Promise<Packet>((resolve) => waiting.push(resolve));
  return { c: connection, sent, nextAck };
}

const packet = (pn: number, body: PacketBody): Packet => ({ session: SESSION, pn, body });
/** What tryReceive() handed out: chunk numbers, `undefined` once nothing waits. */
const chunks = (frames: Array<ReturnType<UdpConnection['tryReceive']>>) => frames.map((f) => (f === undefined ? undefined : f.type === 'data' ? f.chunk : f.type));
const data = (seq: number, chunk: number) => ({ type: 'data' as const, seq, index: 0, chunk, bytes: Buffer.alloc(100, chunk) });

describe('UdpConnection receiving', () => {
  it('delivers each DATA sequence number once, acknowledges duplicates too', async () => {
    const { c, nextAck } = open();
    const ack = nextAck();
    c.onPacket(packet(0, data(0, 7)), 150);
    c.onPacket(packet(1, data(0, 7)), 150); // the same payload again, in a new packet (a retransmission)
    c.onPacket(packet(2, data(1, 8)), 150);
    // A gap (packet 3 missing) makes the ACK go out at once.
    c.onPacket(packet(4, data(2, 9)), 150);
    const a = (await ack).body;
    expect(a.type === 'ack' && a.ranges).toEqual([
      { start: 4, end: 4 },
      { start: 0, end: 2 },
    ]);
    expect(chunks([c.tryReceive(), c.tryReceive(), c.tryReceive(), c.tryReceive()])).toEqual([7, 8, 9, undefined]);
    expect(c.stats().duplicates).toBe(1);
  });

  it('drops, without acknowledging, DATA further ahead than any honest sender gets', async () => {
    const { c, nextAck } = open();
    const ack = nextAck();
    c.onPacket(packet(0, data(1 << 16, 1)), 150); // 65536 ahead of the first missing number (0)
    c.onPacket(packet(1, data(0, 2)), 150);
    c.onPacket(packet(3, data(1, 3)), 150); // a gap: the ACK goes out now
    const a = (await ack).body;
    // Packet 0 is not acknowledged: its sender will send that payload again later.
    expect(a.type === 'ack' && a.ranges).toEqual([
      { start: 3, end: 3 },
      { start: 1, end: 1 },
    ]);
    expect(chunks([c.tryReceive(), c.tryReceive(), c.tryReceive()])).toEqual([2, 3, undefined]);
  });

  it('a CLOSE with an error code reaches the transfer layer as that ERROR frame, then the connection is closed', async () => {
    const { c } = open();
    const first = c.receive();
    c.onPacket(packet(0, { type: 'close', code: 803, message: 'no space left' }), 60);
    expect(await first).toEqual({ type: 'error', code: 803, message: 'no space left' });
    await expect(c.receive()).rejects.toMatchObject({ code: 'E_CONNECTION_LOST' });
  });
});
