/**
 * Batched datagram I/O (native/udp_batch.c through batch.ts) on real sockets over loopback:
 * what a batch sends arrives as exactly the datagrams queued, in order, whether GSO coalesced
 * them or not; what a drain reads is exactly what was sent, with the sender's address as dgram
 * reports it; too-long datagrams are cut, never spilled into the next slot.
 *
 * CI runs on Linux, where `npm ci` builds the addon: a missing addon fails the first test
 * instead of letting every UDP test fall back to dgram unnoticed.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { crc32c } from '../../../src/protocol/index.js';
import { BatchReceiver, BatchSender, batching, nativeCrc32c, nativeCrcOk, nativeEncodeData, socketFd, type Source } from '../../../src/transport/udp/batch.js';
import { decodePacket, encodeDataPacket } from '../../../src/transport/udp/packet.js';
import { mulberry32 } from '../../helpers/seeded.js';

const sockets: dgram.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) {
    try {
      s.close();
    } catch {
      // closed by the test
    }
  }
});

async function bound(type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(type);
  sockets.push(s);
  await new Promise<void>((resolve) => s.bind(0, host, resolve));
  // Room for every datagram a test sends before anything reads (loopback drops on overflow).
  s.setRecvBufferSize(4 * 1024 * 1024);
  s.setSendBufferSize(4 * 1024 * 1024);
  return s;
}

async function connected(to: dgram.Socket, type: 'udp4' | 'udp6', host: string): Promise<dgram.Socket> {
  const s = await bound(type, host);
  await new Promise<void>((resolve) => s.connect(to.address().port, host, resolve));
  return s;
}

/** Collects `count` datagrams through dgram alone (no draining). */
function collect(socket: dgram.Socket, count: number): Promise<Array<{ msg: Buffer; rinfo: dgram.RemoteInfo }>> {
  const got: Array<{ msg: Buffer; rinfo: dgram.RemoteInfo }> = [];
  return new Promise((resolve) => {
    socket.on('message', (msg, rinfo) => {
      got.push({ msg, rinfo });
      if (got.length === count) resolve(got);
    });
  });
}

/** A datagram whose bytes say which one it is. */
function datagram(i: number, size: number): Buffer {
  const b = Buffer.alloc(size, i & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}

function ipv6(): boolean {
  return Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));
}

describe('batched UDP I/O', () => {
  it('is built and loaded on Linux (npm ci builds native/udp_batch.c)', () => {
    expect(process.platform).toBe('linux');
    expect(batching).toEqual({ available: true, reason: '' });
  });

  it('finds the file descriptor of a bound dgram socket', async () => {
    const s = await bound('udp4', '127.0.0.1');
    expect(socketFd(s)).toBeGreaterThan(2);
  });

  it('sends runs of equal size and a shorter last one as the very datagrams queued, in order', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const tx = await connected(rx, 'udp4', '127.0.0.1');
    const sender = new BatchSender(tx, () => false);
    expect(sender.io).toBe('gso');
    // 150 full datagrams (more than one GSO message), a short one, more full ones, one byte, a large one.
    const sizes = [...Array<number>(150).fill(1472), 700, ...Array<number>(50).fill(1472), 1, 9000, 1472];
    const sent = sizes.map((size, i) => datagram(i, Math.max(size, 4)));
    sent[sizes.indexOf(1)] = Buffer.from([0xab]);
    const got = collect(rx, sent.length);
    for (const d of sent) sender.send(d);
    expect(sender.idle).toBe(false);
    sender.flush();
    expect(sender.idle).toBe(true);
    const received = await got;
    expect(received.map((r) => r.msg.length)).toEqual(sent.map((d) => d.length));
    expect(received.every((r, i) => r.msg.equals(sent[i]!))).toBe(true);
    expect(received[0]!.rinfo.port).toBe(tx.address().port);
  });

  it('sends a queued batch by itself once the code that queued it returns', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const tx = await connected(rx, 'udp4', '127.0.0.1');
    const sender = new BatchSender(tx, () => false);
    const sent = [datagram(1, 1200), datagram(2, 1200), datagram(3, 100)];
    const got = collect(rx, 3);
    for (const d of sent) sender.send(d);
    const received = await got;
    expect(received.map((r) => r.msg)).toEqual(sent);
  });

  it('drops what is queued once the connection says it is closed, and sends nothing', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const tx = await connected(rx, 'udp4', '127.0.0.1');
    let closed = false;
    const sender = new BatchSender(tx, () => closed);
    sender.send(datagram(1, 100));
    closed = true;
    sender.flush();
    expect(sender.idle).toBe(true);
    // A datagram sent afterwards through dgram is the first to arrive.
    const got = collect(rx, 1);
    tx.send(datagram(2, 50));
    expect((await got)[0]!.msg).toEqual(datagram(2, 50));
  });

  it('reports an ICMP port unreachable as dgram would: an ECONNREFUSED error on the socket', async () => {
    const gone = await bound('udp4', '127.0.0.1');
    const tx = await connected(gone, 'udp4', '127.0.0.1');
    await new Promise<void>((resolve) => gone.close(() => resolve()));
    const sender = new BatchSender(tx, () => false);
    const error = new Promise<NodeJS.ErrnoException>((resolve) => tx.once('error', resolve));
    // The first batch draws the ICMP reply; a later send reports it.
    for (let round = 0; round < 50; round++) {
      sender.send(datagram(round, 64));
      sender.flush();
      const e = await Promise.race([error, new Promise<null>((resolve) => setImmediate(() => resolve(null)))]);
      if (e) break;
    }
    expect((await error).code).toBe('ECONNREFUSED');
  });

  it('drains every waiting datagram in order, with its source as dgram reports it, from several senders', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const a = await connected(rx, 'udp4', '127.0.0.1');
    const b = await connected(rx, 'udp4', '127.0.0.1');
    const receiver = new BatchReceiver(rx);
    expect(receiver.enabled).toBe(true);
    receiver.expect(1472);
    const seen: Array<{ msg: Buffer; source: Source }> = [];
    const total = 300;
    let drained = 0;
    const all = new Promise<void>((resolve) => {
      const on = (msg: Buffer, source: Source) => {
        // (dgram's rinfo has a size too; the batch's sources do not)
        seen.push({ msg: Buffer.from(msg), source: { address: source.address, family: source.family, port: source.port } });
        if (seen.length === total) resolve();
      };
      rx.on('message', (msg, rinfo) => {
        on(msg, rinfo as Source);
        drained += receiver.drain(on);
      });
    });
    // Alternating senders, so the source changes inside a batch.
    for (let i = 0; i < total; i++) (i % 3 === 0 ? b : a).send(datagram(i, i % 7 === 0 ? 200 : 1472));
    await all;
    const fromA = seen.filter((s) => s.source.port === a.address().port);
    const fromB = seen.filter((s) => s.source.port === b.address().port);
    expect(fromA.length + fromB.length).toBe(total);
    // Most arrived while the first was being read: the drain, not dgram, read them.
    expect(drained).toBeGreaterThan(total / 2);
    expect(fromB.map((s) => s.msg.readUInt32BE(0))).toEqual([...Array(total).keys()].filter((i) => i % 3 === 0));
    expect(fromA.map((s) => s.msg.readUInt32BE(0))).toEqual([...Array(total).keys()].filter((i) => i % 3 !== 0));
    for (const s of seen) {
      const i = s.msg.readUInt32BE(0);
      expect(s.msg.equals(datagram(i, i % 7 === 0 ? 200 : 1472))).toBe(true);
      expect(s.source).toEqual({ address: '127.0.0.1', family: 'IPv4', port: i % 3 === 0 ? b.address().port : a.address().port });
    }
  });

  it('cuts a datagram longer than a slot to the slot, and the next one is whole', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const tx = await connected(rx, 'udp4', '127.0.0.1');
    const receiver = new BatchReceiver(rx);
    receiver.expect(1024); // buffers of 1024 bytes
    // Two datagrams wait before anything reads: the first through dgram, the rest by draining.
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve) => {
      rx.on('message', (msg) => {
        got.push(Buffer.from(msg));
        receiver.drain((m) => got.push(Buffer.from(m)));
        if (got.length >= 3) resolve();
      });
    });
    tx.send(datagram(0, 500));
    tx.send(datagram(1, 3000));
    tx.send(datagram(2, 1024));
    await done;
    expect(got.map((g) => g.length)).toEqual([500, 1024, 1024]);
    expect(got[1]!.equals(datagram(1, 3000).subarray(0, 1024))).toBe(true);
    expect(got[2]!.equals(datagram(2, 1024))).toBe(true);
  });

  it('lends each datagram its own buffer; a buffer handed back takes a later datagram, a foreign one is refused', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const tx = await connected(rx, 'udp4', '127.0.0.1');
    const receiver = new BatchReceiver(rx);
    receiver.expect(1472);
    const lent: Buffer[] = [];
    let want = 0;
    let wake: () => void = () => {};
    rx.on('message', () => {
      receiver.drain((msg, _source, isLent) => {
        expect(isLent).toBe(true);
        lent.push(msg);
      });
      if (lent.length >= want) wake();
    });
    /** Sends 11 datagrams numbered from `from`; resolves with the (at least 10) the drain lent. */
    const round = async (from: number): Promise<Buffer[]> => {
      const before = lent.length;
      want = before + 10;
      const arrived = new Promise<void>((resolve) => (wake = resolve));
      for (let i = from; i < from + 11; i++) tx.send(datagram(i, 1472));
      await arrived;
      return lent.slice(before);
    };
    const first = await round(0);
    expect(new Set(first.map((b) => b.buffer)).size).toBe(first.length); // a buffer each
    for (const b of first) receiver.recycle(b);
    receiver.recycle(Buffer.allocUnsafe(1472)); // a slice of Node's shared pool: never reused here
    receiver.recycle(Buffer.allocUnsafeSlow(100)); // not a datagram buffer of this size
    expect(receiver.freeBuffers).toBe(first.length);
    // The next datagrams land in the buffers waiting in the read slots; the recycled ones refill
    // those slots, and take the datagrams after.
    const second = await round(100);
    expect(receiver.freeBuffers).toBe(first.length - second.length);
    const third = await round(200);
    // (With every datagram read in one call per round, all of the third round's are recycled ones.)
    const reused = [...second, ...third].filter((b) => first.some((f) => f.buffer === b.buffer));
    expect(reused.length).toBeGreaterThanOrEqual(Math.min(third.length, second.length));
    for (const b of [...second, ...third]) expect(b.equals(datagram(b.readUInt32BE(0), 1472))).toBe(true);
    expect(third.every((b) => b.readUInt32BE(0) >= 200)).toBe(true);
  });

  it("computes CRC32C as fast-crc32c does, for every length from 0 to 1100 and at random", () => {
    expect(nativeCrc32c).not.toBeNull();
    for (let n = 0; n <= 1100; n++) {
      const b = randomBytes(n);
      expect(nativeCrc32c!(b)).toBe(crc32c(b));
    }
    expect(nativeCrc32c!(Buffer.from('The quick brown fox jumps over the lazy dog'))).toBe(0x22620404);
  });

  it('accepts a packet whose trailer is its CRC32C and refuses one flipped bit anywhere, and anything under 4 bytes', () => {
    expect(nativeCrcOk).not.toBeNull();
    const body = randomBytes(600);
    const packet = Buffer.concat([body, Buffer.alloc(4)]);
    packet.writeUInt32BE(crc32c(body), 600);
    expect(nativeCrcOk!(packet)).toBe(true);
    for (let bit = 0; bit < packet.length * 8; bit += 7) {
      packet[bit >> 3]! ^= 1 << (bit & 7);
      expect(nativeCrcOk!(packet)).toBe(false);
      packet[bit >> 3]! ^= 1 << (bit & 7);
    }
    expect(nativeCrcOk!(Buffer.alloc(0))).toBe(false);
    expect(nativeCrcOk!(Buffer.from([0, 0, 0]))).toBe(false);
    expect(nativeCrcOk!(Buffer.alloc(4))).toBe(true); // the CRC of nothing is 0
    expect(() => nativeCrcOk!('not a buffer' as unknown as Buffer)).toThrow(TypeError);
  });

  it('encodes DATA packets byte for byte as the protocol lays them out (checked field by field), and they decode back', () => {
    expect(nativeEncodeData).not.toBeNull();
    const rand = mulberry32(7);
    const session = 0x0123456789abcdefn;
    const big = (n: number) => Math.floor(rand() * n);
    const cases: Array<[number, number, number, number, number]> = [
      [0, 0, 0, 0, 0],
      [2 ** 53 - 1, 2 ** 53 - 1, 0xffffffff, 2 ** 53 - 1, 1],
      [2 ** 32, 2 ** 32 + 1, 1, 2 ** 40, 1428],
      [1, 2, 3, 4, 65_000],
    ];
    for (let i = 0; i < 300; i++) cases.push([big(2 ** 53), big(2 ** 40), big(2 ** 32), big(2 ** 45), big(1500)]);
    for (const [pn, seq, index, chunk, length] of cases) {
      const bytes = randomBytes(length);
      const packet = encodeDataPacket(session, pn, seq, index, chunk, bytes);
      // The layout written out by hand: magic, version, type, 0, session, pn, seq, index, chunk, bytes, CRC.
      const expected = Buffer.alloc(44 + length + 4);
      const u64 = (v: number, at: number) => {
        expected.writeUInt32BE(Math.floor(v / 2 ** 32), at);
        expected.writeUInt32BE(v % 2 ** 32, at + 4);
      };
      packet.copy(expected, 0, 0, 8); // magic, version, type, reserved: checked by decodePacket below
      expected.writeBigUInt64BE(session, 8);
      u64(pn, 16);
      u64(seq, 24);
      expected.writeUInt32BE(index, 32);
      u64(chunk, 36);
      bytes.copy(expected, 44);
      expected.writeUInt32BE(crc32c(expected.subarray(0, 44 + length)), 44 + length);
      expect(packet.equals(expected)).toBe(true);
      const d = decodePacket(packet);
      expect(d.ok).toBe(true);
      if (!d.ok) continue;
      expect(d.packet).toMatchObject({ session, pn, body: { type: 'data', seq, index, chunk } });
      expect(d.packet.body.type === 'data' && d.packet.body.bytes.equals(bytes)).toBe(true);
    }
  });

  it('refuses to encode past the end of its slab or a number beyond 2^53', () => {
    const slab = Buffer.alloc(100);
    const head = Buffer.alloc(16);
    expect(() => nativeEncodeData!(slab, 60, head, 0, 0, 0, 0, Buffer.alloc(1))).toThrow(RangeError);
    expect(() => nativeEncodeData!(slab, 0, head, 2 ** 53, 0, 0, 0, Buffer.alloc(1))).toThrow(RangeError);
    expect(() => nativeEncodeData!(slab, -1, head, 0, 0, 0, 0, Buffer.alloc(1))).toThrow(RangeError);
    expect(nativeEncodeData!(slab, 0, head, 0, 0, 0, 0, Buffer.alloc(52))).toBe(100);
  });

  it('reads nothing before it knows the datagram size', async () => {
    const rx = await bound('udp4', '127.0.0.1');
    const receiver = new BatchReceiver(rx);
    expect(receiver.drain(() => {})).toBe(0);
  });

  it.runIf(ipv6())('formats IPv6 sources exactly as dgram does', async () => {
    const rx = await bound('udp6', '::1');
    const tx = await connected(rx, 'udp6', '::1');
    const receiver = new BatchReceiver(rx);
    receiver.expect(1472);
    const sources: Source[] = [];
    const viaDgram: dgram.RemoteInfo[] = [];
    const done = new Promise<void>((resolve) => {
      rx.on('message', (_msg, rinfo) => {
        viaDgram.push(rinfo);
        receiver.drain((_m, s) => sources.push({ ...s }));
        if (viaDgram.length + sources.length >= 20) resolve();
      });
    });
    const sender = new BatchSender(tx, () => false);
    for (let i = 0; i < 20; i++) sender.send(datagram(i, 1400));
    sender.flush();
    await done;
    expect(viaDgram.length).toBeGreaterThan(0);
    expect(sources.length).toBeGreaterThan(0);
    for (const s of sources) expect(s).toEqual({ address: viaDgram[0]!.address, family: 'IPv6', port: viaDgram[0]!.port });
  });
});
