/**
 * Issue 5, the UDP port: hostile datagrams against an in-process Receiver listening on TCP and
 * UDP (127.0.0.1, port 0, target `base/out`), while a transfer is live and after one finished.
 *
 * A live transfer here is driven frame by frame through the project's own UDP transport
 * (connectUdp → UdpConnection, a Transport), so a test knows exactly where the transfer stands
 * (after the ACCEPT, before any DATA) when it fires. Datagrams "from the sender's own address"
 * go through a small forwarder whose upstream socket is the address the receiver sees, so the
 * test can add its own datagrams to the sender's. Replays use packets captured through the
 * filter hook of the project's relay (src/impair/relay.ts). No sleeps: the tests wait on replies
 * (a RETRY the receiver sends to a probe INITIAL marks that it has read everything before it),
 * on the receiver's events and on the transfer's own frames.
 *
 * Each test ends with: the live transfer committed byte-identical (or, for replays, no new
 * transfer and the file in place untouched), nothing outside the target folder, the exact
 * counters or codes, and an honest transfer afterwards (expectCleanAndStillServing over TCP,
 * plus a UDP one where the test is about UDP state).
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                                                              | where                                                                                        |
 * |-------------------------------------------------------------------|----------------------------------------------------------------------------------------------|
 * | datagrams of 0, 1 and 3 bytes, 200 random ones, forged packets for unknown sessions, to an idle receiver (the real CLI) | test/e2e/udp.test.ts: 'empty, tiny, random and forged datagrams to an idle --once receiver …' |
 * | every truncated prefix, flipped bit, bad CRC, unknown type of a packet (codec level) | test/transport/udp/packet.test.ts: 'packet: decodePacket refuses', 'decodePacket never throws' |
 * | forged cookies, the 3× amplification limit                        | test/transport/udp/endpoint.test.ts: 'a forged cookie gets a fresh RETRY …', '… at most 3× its size …' |
 * | corrupt datagrams on the path (counted, retransmitted)            | test/e2e/udp.test.ts: '5% loss, … 0.1% corruption both ways (seed 42) …'                      |
 * | DATA far ahead of the window                                      | test/transport/udp/connection.test.ts: 'drops, without acknowledging, DATA further ahead …'    |
 *
 * New here: datagrams of 0–3 bytes, random bytes, valid packets with a bad CRC, and packets of an
 * unknown type or version (valid CRC) from the live sender's own address (dropped and counted as
 * corrupt, the transfer unharmed); valid packets
 * with the live session's id from another address (DATA, STREAM carrying an ERROR, ACK, CLOSE,
 * PING, random bytes: all ignored), and a whole second handshake there with the same session id
 * (a separate session, which fails alone); the packets of a finished transfer replayed from
 * another port, and from its very address and port.
 */
import dgram from 'node:dgram';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Relay } from '../../src/impair/relay.js';
import { crc32c, encodeFrameToBuffer, type Frame } from '../../src/protocol/index.js';
import { DEFAULT_UDP_OPTIONS, connectUdp } from '../../src/transport/index.js';
import type { UdpConnection } from '../../src/transport/udp/connection.js';
import { decodePacket, encodeDataPacket, encodePacket, type Packet } from '../../src/transport/udp/packet.js';
import { send } from '../../src/transfer/sender.js';
import { mulberry32, seededBytes } from '../helpers/seeded.js';
import { digestOf, offerOf } from '../transfer/harness.js';
import { events, expectCleanAndStillServing, port, restartReceiver, source, target, useReceiverFixture } from '../transfer/receiver-fixture.js';

useReceiverFixture();

const CHUNK = 1024;
const SIZE = 20 * CHUNK + 333;
const content = seededBytes(SIZE, 9090);
const HELLO: Frame = { type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'hostile-udp/2' };

const sockets: dgram.Socket[] = [];
const relays: Relay[] = [];
const connections: UdpConnection[] = [];

afterEach(async () => {
  for (const c of connections.splice(0)) c.destroy();
  await Promise.all(relays.splice(0).map((r) => r.close()));
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

/** A UDP socket on 127.0.0.1 (port 0 unless given) that collects what comes back; closed after the test. */
async function udpSocket(bindPort = 0): Promise<{ socket: dgram.Socket; port: number; replies: Buffer[]; sendTo: (buf: Buffer, to: number) => Promise<void>; waitFor: (pred: (p: Packet) => boolean) => Promise<Packet> }> {
  const socket = dgram.createSocket('udp4');
  sockets.push(socket);
  const replies: Buffer[] = [];
  const waiters: Array<{ pred: (p: Packet) => boolean; resolve: (p: Packet) => void }> = [];
  socket.on('message', (msg) => {
    replies.push(msg);
    const d = decodePacket(msg);
    if (!d.ok) return;
    for (const w of waiters.splice(0)) {
      if (w.pred(d.packet)) w.resolve(d.packet);
      else waiters.push(w);
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(bindPort, '127.0.0.1', () => resolve());
  });
  return {
    socket,
    port: socket.address().port,
    replies,
    sendTo: (buf, to) => new Promise((resolve, reject) => socket.send(buf, to, '127.0.0.1', (err) => (err ? reject(err) : resolve()))),
    waitFor: (pred) => {
      for (const r of replies) {
        const d = decodePacket(r);
        if (d.ok && pred(d.packet)) return Promise.resolve(d.packet);
      }
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

/**
 * A forwarder in front of the receiver: what the client sends to `port` leaves through `upstream`,
 * replies go back to the client. `inject` sends from `upstream` too: to the receiver, that is the
 * client's own address and port. One socket, in order: what is injected before a forwarded
 * datagram is read before it.
 */
async function forwarder(to: number) {
  const front = await udpSocket();
  const upstream = await udpSocket();
  let client: dgram.RemoteInfo | null = null;
  front.socket.on('message', (msg, rinfo) => {
    client = rinfo;
    upstream.socket.send(msg, to, '127.0.0.1');
  });
  upstream.socket.on('message', (msg) => {
    if (client) front.socket.send(msg, client.port, client.address);
  });
  return { port: front.port, upstreamPort: upstream.port, inject: (buf: Buffer) => upstream.sendTo(buf, to) };
}

/** A fresh session id (fixed per test: the tests forge packets for it). */
let nextSession = 0x7e57_0000_0000_0001n;

/**
 * A live UDP transfer of `content` as live.bin, driven by hand: handshake, HELLO, OFFER, up to the
 * receiver's ACCEPT. `finish()` sends every chunk and END, and returns the VERDICTs.
 */
async function liveTransfer(via: number) {
  const session = nextSession++;
  const t = await connectUdp({ host: '127.0.0.1', port: via }, { ...DEFAULT_UDP_OPTIONS, timeoutMs: 5000, session });
  connections.push(t);
  t.setIdleTimeout(10_000);
  const offer = offerOf('live.bin', SIZE, CHUNK);
  t.send(HELLO);
  expect(await t.receive()).toMatchObject({ type: 'welcome', version: 2 });
  t.send(offer);
  expect(await t.receive()).toMatchObject({ type: 'accept', entries: [{ index: 0, action: 'send', have: [] }], more: false });
  /** Where the sender's control stream stands: the byte offset its next STREAM packet carries. */
  const streamOffset = encodeFrameToBuffer(HELLO, session).length + encodeFrameToBuffer(offer, session).length;
  return {
    session,
    streamOffset,
    async finish(): Promise<Frame[]> {
      for (let i = 0; i * CHUNK < SIZE; i++) t.send({ type: 'data', index: 0, chunk: i, data: [content.subarray(i * CHUNK, (i + 1) * CHUNK)] });
      t.send({ type: 'end', index: 0, size: SIZE, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
      const verdicts = [await t.receive(), await t.receive()];
      await t.close();
      return verdicts;
    },
  };
}

/** The live transfer committed live.bin byte-identical; returns the receiver's done result. */
async function expectLiveCommitted(verdicts: Frame[]) {
  expect(verdicts).toMatchObject([
    { type: 'verdict', index: 0, status: 'committed', code: 0, path: 'live.bin' },
    { type: 'verdict', index: 0xffffffff, status: 'committed' },
  ]);
  const done = await events.done.next();
  expect(done).toMatchObject({ name: 'live.bin', transport: 'udp', committed: 1, failed: 0 });
  expect((await fs.readFile(path.join(target, 'live.bin'))).equals(content)).toBe(true);
  return done;
}

/** An honest UDP transfer of a new file, byte-identical. */
async function honestUdp(name: string): Promise<void> {
  const data = seededBytes(7000, 31);
  const file = path.join(source.path, name);
  await fs.writeFile(file, data);
  const result = await send({ sources: [file], target: { host: '127.0.0.1', port }, hash: 'xxh128', chunkSize: CHUNK, timeoutMs: 10_000, transport: 'udp' });
  expect(result).toMatchObject({ committed: 1, failed: 0, transport: 'udp' });
  expect(await events.done.next()).toMatchObject({ name, transport: 'udp', committed: 1 });
  expect((await fs.readFile(path.join(target, name))).equals(data)).toBe(true);
}

/**
 * Makes `from` acknowledge every packet of `session` the receiver sends it (one ACK per packet,
 * covering all seen so far), from packet number 1,000,000 on (above anything replayed).
 */
function ackEverything(from: Awaited<ReturnType<typeof udpSocket>>, session: bigint): void {
  const seen = new Set<number>();
  let pn = 1_000_000;
  from.socket.on('message', (msg) => {
    const d = decodePacket(msg);
    if (!d.ok || d.packet.session !== session || !['stream', 'data', 'ping'].includes(d.packet.body.type)) return;
    seen.add(d.packet.pn);
    const pns = [...seen].sort((a, b) => b - a);
    const ranges: Array<{ start: number; end: number }> = [];
    for (const n of pns) {
      const last = ranges.at(-1);
      if (last && last.start === n + 1) last.start = n;
      else ranges.push({ start: n, end: n });
    }
    from.socket.send(encodePacket(session, pn++, { type: 'ack', largest: pns[0]!, ackDelayMicros: 0, maxData: 1 << 30, ranges: ranges.slice(0, 64) }), port, '127.0.0.1');
  });
}

/** An INITIAL for a new session, whose RETRY shows the receiver has read every datagram this socket sent before it. */
async function probe(from: Awaited<ReturnType<typeof udpSocket>>): Promise<void> {
  const session = nextSession++;
  const retry = from.waitFor((p) => p.session === session && p.body.type === 'retry');
  await from.sendTo(encodePacket(session, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) }), port);
  await retry;
}

describe('a live transfer, hostile datagrams from its own address and port', () => {
  it('datagrams of 0–3 bytes, random bytes, valid packets with a bad CRC, an unknown packet type and version: dropped, counted as corrupt; the transfer commits byte-identical', async () => {
    await restartReceiver({ transports: ['tcp', 'udp'] });
    const fwd = await forwarder(port);
    const live = await liveTransfer(fwd.port);
    const hostile: Buffer[] = [Buffer.alloc(0), Buffer.from([0x53]), Buffer.from('SX'), Buffer.from('SXF')];
    const rand = mulberry32(0xbad);
    for (let i = 0; i < 32; i++) hostile.push(seededBytes(1 + Math.floor(rand() * 1400), 300 + i));
    // Valid packets of the live session, but for their last CRC byte: a DATA with other bytes
    // for chunk 0, and the next piece of the control stream claiming an ERROR. Accepted, either
    // would ruin the transfer.
    const forgedData = encodeDataPacket(live.session, 10_000, 0, 0, 0, seededBytes(CHUNK, 1));
    const forgedError = encodePacket(live.session, 10_001, { type: 'stream', offset: live.streamOffset, bytes: encodeFrameToBuffer({ type: 'error', code: 900, message: 'forged' }, live.session) });
    for (const p of [forgedData, forgedError]) {
      p[p.length - 1]! ^= 0x01;
      expect(decodePacket(p)).toEqual({ ok: false, reason: 'crc' });
      hostile.push(p);
    }
    // And with a valid CRC, an unknown packet type and an unknown packet version.
    for (const [at, value, reason] of [[5, 0x10, 'malformed'], [4, 2, 'version']] as const) {
      const p = encodePacket(live.session, 10_002 + at, { type: 'ping' });
      p[at] = value;
      p.writeUInt32BE(crc32c(p.subarray(0, p.length - 4)), p.length - 4);
      expect(decodePacket(p)).toEqual({ ok: false, reason });
      hostile.push(p);
    }
    for (const b of hostile) await fwd.inject(b);
    const done = await expectLiveCommitted(await live.finish());
    // Every one of them counted against this connection, nothing else (loopback corrupts nothing).
    expect(done.stats?.corrupt).toBe(hostile.length);
    expect(events.failed.length).toBe(0);
    await honestUdp('after.bin');
    await expectCleanAndStillServing(['live.bin', 'after.bin']);
  });
});

describe("a live transfer, packets with its session id from another address", () => {
  it('DATA, STREAM (an ERROR), ACK, CLOSE, PING and random bytes: all ignored; the transfer commits byte-identical', async () => {
    await restartReceiver({ transports: ['tcp', 'udp'] });
    const fwd = await forwarder(port);
    const live = await liveTransfer(fwd.port);
    const intruder = await udpSocket();
    const s = live.session;
    const forged = [
      encodeDataPacket(s, 0, 0, 0, 0, seededBytes(CHUNK, 2)),
      encodeDataPacket(s, 1, 1, 0, 1, seededBytes(CHUNK, 3)),
      encodePacket(s, 2, { type: 'stream', offset: live.streamOffset, bytes: encodeFrameToBuffer({ type: 'error', code: 900, message: 'forged' }, s) }),
      encodePacket(s, 3, { type: 'ack', largest: 100, ackDelayMicros: 0, maxData: 0, ranges: [{ start: 0, end: 100 }] }),
      encodePacket(s, 4, { type: 'close', code: 900, message: 'hijacked' }),
      encodePacket(s, 5, { type: 'ping' }),
      encodePacket(s, 6, { type: 'ready', window: 1, datagramSize: 576 }),
      seededBytes(500, 4),
    ];
    for (const b of forged) await intruder.sendTo(b, port);
    await probe(intruder);
    // Only the probe's RETRY came back: nothing was answered, acknowledged or closed for the intruder.
    expect(intruder.replies.map((r) => decodePacket(r)).map((d) => d.ok && d.packet.body.type)).toEqual(['retry']);
    const done = await expectLiveCommitted(await live.finish());
    expect(done.stats?.corrupt).toBe(0);
    expect(events.failed.length).toBe(0);
    await honestUdp('after.bin');
    await expectCleanAndStillServing(['live.bin', 'after.bin']);
  });

  it('a whole handshake with the same session id from another address is a separate session: its CLOSE ends it alone (E_PROTOCOL), the live one commits', async () => {
    await restartReceiver({ transports: ['tcp', 'udp'] });
    const fwd = await forwarder(port);
    const live = await liveTransfer(fwd.port);
    const intruder = await udpSocket();
    const s = live.session;
    const retry = intruder.waitFor((p) => p.session === s && p.body.type === 'retry');
    await intruder.sendTo(encodePacket(s, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) }), port);
    const cookie = Buffer.from(((await retry).body as { cookie: Buffer }).cookie);
    const ready = intruder.waitFor((p) => p.session === s && p.body.type === 'ready');
    await intruder.sendTo(encodePacket(s, 1, { type: 'initial', datagramSize: 1200, cookie }), port);
    await ready;
    // Its own connection now: a CLOSE with an error there must not touch the live one.
    await intruder.sendTo(encodePacket(s, 2, { type: 'close', code: 900, message: 'hijacked \u001b[2J' }), port);
    const failure = await events.failed.next();
    expect(failure.peer).toBe(`127.0.0.1:${intruder.port}`);
    expect(failure.info).toBeNull();
    expect(failure.error).toMatchObject({ code: 'E_PROTOCOL', remote: true });
    expect(failure.error.message).toBe(`127.0.0.1:${intruder.port} reported an error: hijacked \\x1b[2J`);
    const done = await expectLiveCommitted(await live.finish());
    expect(done.peer).toBe(`127.0.0.1:${fwd.upstreamPort}`);
    expect(events.failed.length).toBe(0);
    await honestUdp('after.bin');
    await expectCleanAndStillServing(['live.bin', 'after.bin']);
  });
});

describe('the packets of a finished transfer, replayed', () => {
  /**
   * An honest UDP transfer of live.bin through the relay, every datagram the sender sent captured
   * by the relay's filter hook. Returns them and the address the receiver saw the sender at.
   */
  async function capturedTransfer(): Promise<{ captured: Buffer[]; peerPort: number; relay: Relay }> {
    await restartReceiver({ transports: ['tcp', 'udp'] });
    const captured: Buffer[] = [];
    const relay = await startRelay({
      target: { host: '127.0.0.1', port },
      seed: 1,
      filter: (direction, datagram) => {
        if (direction === 'forward') captured.push(Buffer.from(datagram));
        return true;
      },
    });
    relays.push(relay);
    const file = path.join(source.path, 'live.bin');
    await fs.writeFile(file, content);
    const result = await send({ sources: [file], target: { host: '127.0.0.1', port: relay.port }, hash: 'xxh128', chunkSize: CHUNK, timeoutMs: 10_000, transport: 'udp' });
    expect(result).toMatchObject({ committed: 1, failed: 0 });
    const done = await expectLiveCommitted([
      { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'xxh128', digest: Buffer.alloc(0), message: '', path: 'live.bin' },
      { type: 'verdict', index: 0xffffffff, status: 'committed', code: 0, hash: 'xxh128', digest: Buffer.alloc(0), message: '', path: '' },
    ]);
    expect((await events.start.next()).name).toBe('live.bin');
    const types = new Set(captured.map((c) => (decodePacket(c) as { packet: Packet }).packet.body.type));
    expect([...types].sort()).toEqual(expect.arrayContaining(['ack', 'close', 'data', 'initial', 'stream']));
    return { captured, peerPort: Number(done.peer.split(':').at(-1)), relay };
  }

  it('from another port: every INITIAL gets a RETRY at most, nothing else happens; the file in place untouched', async () => {
    const { captured } = await capturedTransfer();
    const replayer = await udpSocket();
    for (const c of captured) await replayer.sendTo(c, port);
    await probe(replayer);
    // The cookie of the old handshake is bound to the old address and port: no connection, only RETRYs.
    for (const r of replayer.replies) {
      const d = decodePacket(r);
      expect(d.ok && d.packet.body.type).toBe('retry');
    }
    expect(replayer.replies.length).toBeLessThanOrEqual(captured.filter((c) => c.readUInt8(5) === 1).length + 1);
    expect([events.start.length, events.done.length, events.failed.length]).toEqual([0, 0, 0]);
    expect((await fs.readFile(path.join(target, 'live.bin'))).equals(content)).toBe(true);
    await honestUdp('after.bin');
    await expectCleanAndStillServing(['live.bin', 'after.bin']);
  });

  it('from its very address and port, within the cookie lifetime: a new session that ends "up to date", the replayed DATA never read; the file in place untouched', async () => {
    const { captured, peerPort, relay } = await capturedTransfer();
    const before = await fs.stat(path.join(target, 'live.bin'));
    // The relay's upstream socket was the sender's address: free it and take its port.
    await relay.close();
    const replayer = await udpSocket(peerPort);
    const replay = captured.filter((c) => (decodePacket(c) as { packet: Packet }).packet.body.type !== 'close');
    // Everything but the sender's final CLOSE, which would end the replayed session at a moment
    // that depends on timing: without it, the replay goes as far as it can, deterministically.
    expect(replay.length).toBeLessThan(captured.length);
    const session = (decodePacket(replay[0]!) as { packet: Packet }).packet.session;
    // The replayer acknowledges what the receiver sends, as the old sender did: the receiver's
    // closing wait ends at once instead of after its grace period.
    ackEverything(replayer, session);
    for (const c of replay) await replayer.sendTo(c, port);
    // The old cookie still checks out for this address and port: the handshake, HELLO and OFFER
    // replay. live.bin is in place with that size, so the receiver asks only for its END (ACCEPT
    // "check"); the replayed END carries the same hash: up to date, nothing written.
    const start = await events.start.next();
    expect(start).toMatchObject({ name: 'live.bin', transport: 'udp', peer: `127.0.0.1:${peerPort}` });
    const done = await events.done.next();
    expect(done).toMatchObject({ name: 'live.bin', peer: `127.0.0.1:${peerPort}`, committed: 0, upToDate: 1, failed: 0 });
    const answers = replayer.replies.map((r) => decodePacket(r)).filter((d) => d.ok).map((d) => (d as { packet: Packet }).packet.body.type);
    expect(answers.slice(0, 2)).toEqual(['retry', 'ready']);
    const after = await fs.stat(path.join(target, 'live.bin'));
    expect([after.ino, after.mtimeMs, after.ctimeMs]).toEqual([before.ino, before.mtimeMs, before.ctimeMs]);
    expect((await fs.readFile(path.join(target, 'live.bin'))).equals(content)).toBe(true);
    expect(events.failed.length).toBe(0);
    await honestUdp('after.bin');
    await expectCleanAndStillServing(['live.bin', 'after.bin']);
  });
});
