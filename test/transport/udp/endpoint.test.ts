/**
 * The receiver's UDP socket before a sender is validated: a handshake datagram from an address
 * that has not returned a cookie gets one small RETRY and nothing else (RFC 9000 §8.1: at most 3×
 * the bytes received), and no state is kept for it.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { AMPLIFICATION_LIMIT, listenUdp, type UdpListener } from '../../../src/transport/udp/endpoint.js';
import { PACKET_HEADER_SIZE, PACKET_TRAILER_SIZE, decodePacket, encodePacket } from '../../../src/transport/udp/packet.js';

let listener: UdpListener | null = null;
let client: dgram.Socket | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await listener?.close();
  listener = null;
});

/** Sends `datagram` to the listener and collects what comes back until `count` datagrams or the deadline. */
async function exchange(datagram: Buffer, count: number, deadlineMs: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  client = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => client!.bind(0, '127.0.0.1', resolve));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(got), deadlineMs);
    client!.on('message', (m) => {
      got.push(m);
      if (got.length >= count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
    client!.send(datagram, listener!.port, '127.0.0.1');
  });
}

describe('listenUdp before the address is validated', () => {
  it('answers a cookie-less INITIAL with exactly one RETRY of at most 3× its size, and opens no connection', async () => {
    let connections = 0;
    listener = await listenUdp({ host: '127.0.0.1', port: 0 }, () => connections++);
    const initial = encodePacket(0x1234n, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) });
    expect(initial.length).toBe(PACKET_HEADER_SIZE + 6 + PACKET_TRAILER_SIZE);
    // A second INITIAL (another session) as a marker: the listener answers each datagram as it
    // reads it, so everything the first one caused arrives before the marker's RETRY.
    const marker = encodePacket(0x5678n, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) });
    client = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => client!.bind(0, '127.0.0.1', resolve));
    const replies: Buffer[] = [];
    await new Promise<void>((resolve) => {
      client!.on('message', (m) => {
        replies.push(m);
        const d = decodePacket(m);
        if (d.ok && d.packet.session === 0x5678n) resolve();
      });
      client!.send(initial, listener!.port, '127.0.0.1');
      client!.send(marker, listener!.port, '127.0.0.1');
    });
    expect(replies).toHaveLength(2);
    const reply = replies[0]!;
    expect(reply.length).toBeLessThanOrEqual(AMPLIFICATION_LIMIT * initial.length);
    const d = decodePacket(reply);
    expect(d.ok && d.packet.body.type).toBe('retry');
    expect(d.ok && d.packet.session).toBe(0x1234n);
    expect(connections).toBe(0);
  });

  it('a forged cookie gets a fresh RETRY, not a connection', async () => {
    let connections = 0;
    listener = await listenUdp({ host: '127.0.0.1', port: 0 }, () => connections++);
    const forged = encodePacket(0x99n, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(20, 0xab) });
    const replies = await exchange(forged, 1, 2000);
    expect(replies).toHaveLength(1);
    const d = decodePacket(replies[0]!);
    expect(d.ok && d.packet.body.type).toBe('retry');
    expect(replies[0]!.length).toBeLessThanOrEqual(AMPLIFICATION_LIMIT * forged.length);
    expect(connections).toBe(0);
  });

  it('the cookie it hands out opens a connection (READY), for the same session and address only', async () => {
    const opened: bigint[] = [];
    listener = await listenUdp({ host: '127.0.0.1', port: 0 }, (c) => {
      opened.push(c.session);
      c.destroy();
    });
    const first = await exchange(encodePacket(0x77n, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) }), 1, 2000);
    const retry = decodePacket(first[0]!);
    if (!retry.ok || retry.packet.body.type !== 'retry') throw new Error('expected a RETRY');
    const cookie = Buffer.from(retry.packet.body.cookie);
    // The same cookie for another session is refused (another RETRY), from the same socket.
    const other = await new Promise<Buffer>((resolve) => {
      client!.once('message', resolve);
      client!.send(encodePacket(0x78n, 1, { type: 'initial', datagramSize: 1200, cookie }), listener!.port, '127.0.0.1');
    });
    const o = decodePacket(other);
    expect(o.ok && o.packet.body.type).toBe('retry');
    expect(opened).toEqual([]);
    const ready = await new Promise<Buffer>((resolve) => {
      client!.once('message', resolve);
      client!.send(encodePacket(0x77n, 2, { type: 'initial', datagramSize: 1200, cookie }), listener!.port, '127.0.0.1');
    });
    const r = decodePacket(ready);
    expect(r.ok && r.packet.body.type).toBe('ready');
    expect(opened).toEqual([0x77n]);
  });
});
