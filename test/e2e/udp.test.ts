/**
 * End-to-end transfers over UDP through the built CLI (dist/bin/sockxfer.js) on 127.0.0.1 and
 * ::1: plain, with every datagram size, through the seeded impairment relay (loss, reordering,
 * duplication, corruption in both directions; an ACK blackout; a lost tail), many senders at
 * once, a receiver that dies, hostile datagrams, and the wrong transport. Every transfer that
 * succeeds is checked byte for byte (SHA-256 of source and result) and leaves the final name and
 * nothing else in the folder (no temporary file, no `.sockxfer-partial`).
 *
 * The relay runs in this process (src/impair/relay.ts), between sender and receiver:
 *   sender → 127.0.0.1:relay.port → relay → receiver
 * so its filter sees every datagram and its stats say what it did. Waits are on events (JSON
 * events, process exits, replies), never on sleeps, and every wait is bounded.
 */
import dgram from 'node:dgram';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRelay, type Direction, type Relay, type RelayOptions } from '../../src/impair/relay.js';
import { PACKET_TYPE, decodePacket, encodeDataPacket, encodePacket } from '../../src/transport/udp/packet.js';
import { startupEvent,
  listDir,
  randomFile,
  send,
  sha256File,
  sockxfer,
  sparseFile,
  startReceiver,
  waitForCount,
  type JsonEvent,
  type Proc,
  useWorkspace,
  within,
  exitWithin,
} from '../helpers/cli.js';
import { mulberry32, seededBytes } from '../helpers/seeded.js';
import { PARTIAL } from '../helpers/tree.js';

const ws = useWorkspace();

/** Whether this machine can bind a UDP socket on `host` (decided before the tests are collected, so a skip is visible). */
async function canBindUdp(host: string): Promise<boolean> {
  const socket = dgram.createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    socket.close();
  }
}
const HAS_IPV6_LOOPBACK = await canBindUdp('::1');

/** Default datagram (1200 bytes) minus the DATA packet overhead (24 header + 20 fields + 4 CRC): the chunk size a UDP sender picks. */
const DEFAULT_UDP_CHUNK = 1200 - 48;
/** Where a DATA packet carries its chunk index (header 24, then seq u64, file index u32). */
const CHUNK_OFFSET = 24 + 12;
/** Where a STREAM packet carries its stream offset. */
const STREAM_OFFSET = 24;

const relays: Relay[] = [];
const sockets: dgram.Socket[] = [];

afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.close()));
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

/** A relay in front of `port` on 127.0.0.1, closed after the test. */
async function relayTo(port: number, options: Omit<RelayOptions, 'target'>): Promise<Relay> {
  const relay = await startRelay({ target: { host: '127.0.0.1', port }, ...options });
  relays.push(relay);
  return relay;
}

interface Stats {
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number;
  packetsReceived: number;
  retransmitted: number;
  lost: number;
  spurious: number;
  duplicates: number;
  corrupt: number;
  probes: number;
  srttMs: number | null;
  minRttMs: number | null;
  rateBytesPerSecond: number;
  congestionControl: string;
  io: string;
}

const statsOf = (done: JsonEvent): Stats => done.stats as Stats;

/** The second summary line a UDP transfer prints on stderr (src/commands/output.ts statsLine); the sender's ends with its rate. */
const UDP_STATS_LINE =
  /^ {2}udp: \d+ packets sent, \d+ received; \d+ retransmitted \(\d+\.\d\d%\), \d+ declared lost, \d+ spurious, \d+ duplicates, \d+ corrupt dropped; RTT (?:[\d.]+ ms|-) \(min (?:[\d.]+ ms|-)\); io (?:gso|sendmmsg|recvmmsg|dgram)(?:; rate .+ \((?:rate|reno)\))?$/m;
const SENDER_RATE = /; rate .+ \((?:rate|reno)\)$/m;

/** What the run of one sender into one `--once` receiver left behind. */
interface Run {
  sent: { code: number; events: JsonEvent[]; stderr: string; last: JsonEvent | undefined };
  receiver: Proc;
  receiverCode: number;
}

/**
 * The checks every successful transfer gets: exit 0 on both sides, the file byte-identical
 * under its name and nothing else in the folder (no `.part`, no `.sockxfer-partial`), done events over UDP with stats
 * on both sides and the same hash. Returns both done events.
 */
async function expectDelivered(run: Run, name: string, sha: string, size: number, peer: string): Promise<{ senderDone: JsonEvent; receiverDone: JsonEvent }> {
  expect(run.sent.code, run.sent.stderr).toBe(0);
  expect(run.receiverCode, run.receiver.stderr()).toBe(0);
  expect(await sha256File(path.join(ws.out, name))).toBe(sha);
  expect(await listDir(ws.out)).toEqual([name]);
  const senderDone = run.sent.last!;
  const receiverDone = run.receiver.events.find((e) => e.event === 'done')!;
  expect(senderDone).toMatchObject({ event: 'done', name, bytes: size, transport: 'udp', peer });
  expect(receiverDone).toMatchObject({ event: 'done', name, bytes: size, transport: 'udp', hash: senderDone.hash, path: path.join(ws.out, name) });
  for (const done of [senderDone, receiverDone]) {
    const s = statsOf(done);
    expect(s.packetsSent).toBeGreaterThan(0);
    expect(s.packetsReceived).toBeGreaterThan(0);
    expect(s.congestionControl).toMatch(/^(rate|reno)$/);
  }
  return { senderDone, receiverDone };
}

/** One `--udp` send of `size` random bytes into a fresh `--once` receiver (optionally through a relay built by `via`). */
async function udpOnce(
  name: string,
  size: number,
  options: { sendArgs?: string[]; receiveArgs?: string[]; via?: (receiverPort: number) => Promise<Relay>; env?: NodeJS.ProcessEnv } = {},
): Promise<Run & { sha: string; file: string; relay: Relay | undefined; peer: string }> {
  const file = path.join(ws.src, name);
  const sha = await randomFile(file, size);
  const { proc: receiver, port, address } = await startReceiver(ws.out, ['--once', ...(options.receiveArgs ?? [])], options.env);
  const relay = options.via ? await options.via(port) : undefined;
  const peer = relay ? `127.0.0.1:${relay.port}` : address;
  const sent = await send(file, peer, ['--udp', ...(options.sendArgs ?? [])], options.env);
  const receiverCode = await exitWithin(receiver, 15_000, 'the --once receiver after the sender finished');
  return { sent, receiver, receiverCode, sha, file, relay, peer };
}

describe('plain UDP transfers (no relay)', () => {
  it('3 MiB with the default datagram size: byte-identical, done events over udp with stats, the udp stats line on stderr', async () => {
    const size = 3 * 1024 * 1024 + 17;
    const run = await udpOnce('plain.bin', size);
    const { senderDone, receiverDone } = await expectDelivered(run, 'plain.bin', run.sha, size, run.peer);
    const start = run.sent.events.find((e) => e.event === 'start');
    expect(start).toMatchObject({ name: 'plain.bin', bytes: size, transport: 'udp' });
    // The sender sent at least one packet per chunk; the receiver got at least that many.
    const chunks = Math.ceil(size / DEFAULT_UDP_CHUNK);
    expect(statsOf(senderDone).packetsSent).toBeGreaterThanOrEqual(chunks);
    expect(statsOf(receiverDone).packetsReceived).toBeGreaterThanOrEqual(chunks);
    expect(statsOf(senderDone).congestionControl).toBe('rate');
    // Batched system calls on Linux (native/udp_batch.c): GSO batches out, recvmmsg batches in.
    expect(statsOf(senderDone).io).toBe('gso');
    expect(statsOf(receiverDone).io).toBe('recvmmsg');
    expect(run.sent.stderr).toMatch(/; io gso; rate /);
    expect(run.sent.stderr).toMatch(UDP_STATS_LINE);
    expect(run.receiver.stderr()).toMatch(UDP_STATS_LINE);
    // The sending rate is the data sender's; the receiver only sent ACKs.
    expect(run.sent.stderr).toMatch(SENDER_RATE);
    expect(run.receiver.stderr()).not.toMatch(SENDER_RATE);
    expect(run.sent.stderr).toMatch(/^sent plain\.bin .* over udp in /m);
  });

  it('with SOCKXFER_UDP_BATCH=0 on both sides: one dgram call per datagram (io dgram), byte-identical', async () => {
    const size = 3 * 1024 * 1024 + 3;
    const run = await udpOnce('unbatched.bin', size, { env: { SOCKXFER_UDP_BATCH: '0' } });
    const { senderDone, receiverDone } = await expectDelivered(run, 'unbatched.bin', run.sha, size, run.peer);
    expect(statsOf(senderDone).io).toBe('dgram');
    expect(statsOf(receiverDone).io).toBe('dgram');
    expect(run.sent.stderr).toMatch(/; io dgram; rate /);
  });

  it('--version says whether UDP I/O is batched, and why not', async () => {
    const on = sockxfer(['--version']);
    expect(await on.exited).toBe(0);
    expect(on.stdout().toString()).toMatch(/^sockxfer \S+ \(protocol \d+, crc32c \S+, xxh128 \S+, udp io batched, node v[\d.]+\)\n$/);
    const off = sockxfer(['--version'], { env: { SOCKXFER_UDP_BATCH: '0' } });
    expect(await off.exited).toBe(0);
    expect(off.stdout().toString()).toContain(', udp io dgram (SOCKXFER_UDP_BATCH=0), ');
  });

  it('--datagram-size ethernet (1472 on IPv4)', async () => {
    const size = 2 * 1024 * 1024 + 5;
    const run = await udpOnce('ethernet.bin', size, { sendArgs: ['--datagram-size', 'ethernet'] });
    const { senderDone } = await expectDelivered(run, 'ethernet.bin', run.sha, size, run.peer);
    // 1472-byte datagrams carry 1424-byte chunks: fewer packets than the default size would need.
    expect(statsOf(senderDone).packetsSent).toBeGreaterThanOrEqual(Math.ceil(size / (1472 - 48)));
    expect(statsOf(senderDone).packetsSent).toBeLessThan(Math.ceil(size / DEFAULT_UDP_CHUNK));
  });

  it('--datagram-size 65507 (the IPv4 maximum) on loopback', async () => {
    const size = 3 * 1024 * 1024 + 3;
    const run = await udpOnce('max.bin', size, { sendArgs: ['--datagram-size', '65507'] });
    const { senderDone } = await expectDelivered(run, 'max.bin', run.sha, size, run.peer);
    const chunks = Math.ceil(size / (65507 - 48));
    expect(statsOf(senderDone).packetsSent).toBeGreaterThanOrEqual(chunks);
    // Big datagrams really were used: far fewer packets than 1200-byte ones would take.
    expect(statsOf(senderDone).packetsSent).toBeLessThan(Math.ceil(size / DEFAULT_UDP_CHUNK) / 4);
  });

  it.skipIf(!HAS_IPV6_LOOPBACK)('over [::1]', async () => {
    const file = path.join(ws.src, 'six.bin');
    const size = 1024 * 1024 + 1;
    const sha = await randomFile(file, size);
    const receiver = sockxfer(['receive', '--port', '0', '--host', '::1', '--dir', ws.out, '--json', '--once']);
    const listening = await receiver.waitFor((e) => e.event === 'listening' && e.transport === 'udp');
    expect(listening).toMatchObject({ host: '::1', transport: 'udp' });
    const peer = `[::1]:${listening.port as number}`;
    const sent = await send(file, peer, ['--udp']);
    const receiverCode = await exitWithin(receiver, 15_000, 'the --once receiver after the sender finished');
    const { receiverDone } = await expectDelivered({ sent, receiver, receiverCode }, 'six.bin', sha, size, peer);
    expect(receiverDone.peer).toMatch(/^\[::1\]:\d+$/);
  });

  it('an empty file', async () => {
    const run = await udpOnce('empty.bin', 0);
    await expectDelivered(run, 'empty.bin', run.sha, 0, run.peer);
  });

  it('a 1-byte file', async () => {
    const run = await udpOnce('one.bin', 1);
    await expectDelivered(run, 'one.bin', run.sha, 1, run.peer);
  });
});

describe('through the impairment relay', () => {
  it('5% loss, 5% reordering (5 ms), 1% duplication, 0.1% corruption both ways (seed 42): byte-identical, retransmissions, duplicates and corrupt datagrams counted', async () => {
    // Seed 42 corrupts forward datagrams number 515, 762, 2458 and 2935 (the model's draws do
    // not depend on timing), so a 4 MiB transfer (~3,700 DATA packets) meets some corruption.
    const impair = { loss: 0.05, reorder: 0.05, reorderDelayMs: 5, duplicate: 0.01, corrupt: 0.001 };
    const size = 4 * 1024 * 1024;
    const run = await udpOnce('lossy.bin', size, { via: (port) => relayTo(port, { forward: impair, backward: impair, seed: 42 }) });
    const stats = run.relay!.stats();
    const context = `relay stats: ${JSON.stringify(stats)}\nsender stderr:\n${run.sent.stderr}\nreceiver stderr:\n${run.receiver.stderr()}`;
    expect(run.sent.code, context).toBe(0);
    const { senderDone, receiverDone } = await expectDelivered(run, 'lossy.bin', run.sha, size, run.peer);
    const sender = statsOf(senderDone);
    const receiver = statsOf(receiverDone);

    // The relay did impair both directions.
    expect(stats.forward.droppedLoss, context).toBeGreaterThan(0);
    expect(stats.backward.droppedLoss, context).toBeGreaterThan(0);
    expect(stats.forward.duplicated, context).toBeGreaterThan(0);
    expect(stats.forward.reordered, context).toBeGreaterThan(0);
    expect(stats.forward.corrupted, context).toBeGreaterThan(0);

    // The sender recovered the losses; the receiver dropped duplicates and corrupt datagrams.
    expect(sender.retransmitted, context).toBeGreaterThan(0);
    expect(sender.lost, context).toBeGreaterThan(0);
    expect(receiver.duplicates, context).toBeGreaterThan(0);
    expect(receiver.corrupt, context).toBeGreaterThan(0);
    // Never more corrupt datagrams than the relay made (a corrupted datagram may also be duplicated).
    expect(receiver.corrupt, context).toBeLessThanOrEqual(2 * stats.forward.corrupted);
    expect(sender.corrupt, context).toBeLessThanOrEqual(2 * stats.backward.corrupted);
  });

  it('every ACK dropped for 2 s mid-transfer: the transfer carries on afterwards and completes', async () => {
    const BLACKOUT_AFTER = 600;
    const BLACKOUT_MS = 2000;
    let t0: number | null = null;
    let acksDropped = 0;
    let lastDataAt = 0;
    const filter = (direction: Direction, datagram: Buffer, now: number): boolean => {
      const type = datagram[5];
      if (direction === 'forward' && type === PACKET_TYPE.data) {
        t0 ??= now;
        lastDataAt = now;
      }
      if (direction === 'backward' && type === PACKET_TYPE.ack && t0 !== null && now >= t0 + BLACKOUT_AFTER && now < t0 + BLACKOUT_AFTER + BLACKOUT_MS) {
        acksDropped++;
        return false;
      }
      return true;
    };
    // 8 MiB at 20 Mbit/s: at least 3.3 s of data, so the blackout (0.6 s to 2.6 s) falls inside it.
    const size = 8 * 1024 * 1024;
    const run = await udpOnce('blackout.bin', size, { sendArgs: ['--rate', '20M'], via: (port) => relayTo(port, { seed: 7, filter }) });
    const stats = run.relay!.stats();
    const context = `relay stats: ${JSON.stringify(stats)}\nsender stderr:\n${run.sent.stderr}\nreceiver stderr:\n${run.receiver.stderr()}`;
    expect(run.sent.code, context).toBe(0);
    await expectDelivered(run, 'blackout.bin', run.sha, size, run.peer);
    expect(acksDropped, context).toBeGreaterThan(0);
    expect(stats.backward.droppedFilter).toBe(acksDropped);
    // Data still flowed after the blackout ended: it really was mid-transfer.
    expect(lastDataAt, context).toBeGreaterThan(t0! + BLACKOUT_AFTER + BLACKOUT_MS);
  });

  it('the tail lost: the first copy of the last 5 chunks, of END and of VERDICT dropped, recovered by the probe timeout well within the idle timeout', async () => {
    // 301 chunks of 1152 bytes (the default 1200-byte datagram), the last one 100 bytes.
    const size = DEFAULT_UDP_CHUNK * 300 + 100;
    const lastChunk = Math.ceil(size / DEFAULT_UDP_CHUNK) - 1;
    const TAIL = 5;
    const droppedChunks = new Set<number>();
    const resentChunks = new Set<number>();
    const streamSeen: Record<Direction, Set<number>> = { forward: new Set(), backward: new Set() };
    const droppedStream: Record<Direction, number> = { forward: 0, backward: 0 };
    let maxChunk = -1;
    let dataStarted = false;
    let tailAt: number | null = null;
    const filter = (direction: Direction, datagram: Buffer, now: number): boolean => {
      const type = datagram[5];
      if (direction === 'forward' && type === PACKET_TYPE.data) {
        dataStarted = true;
        const chunk = Number(datagram.readBigUInt64BE(CHUNK_OFFSET));
        maxChunk = Math.max(maxChunk, chunk);
        if (chunk <= lastChunk - TAIL) return true;
        if (!droppedChunks.has(chunk)) {
          droppedChunks.add(chunk);
          tailAt ??= now;
          return false;
        }
        resentChunks.add(chunk);
        return true;
      }
      // Once the data flows, the control stream carries only the final frames: END from the
      // sender, VERDICT from the receiver. The first copy of each of their pieces is dropped.
      if (type === PACKET_TYPE.stream && dataStarted) {
        const offset = Number(datagram.readBigUInt64BE(STREAM_OFFSET));
        if (!streamSeen[direction].has(offset)) {
          streamSeen[direction].add(offset);
          droppedStream[direction]++;
          return false;
        }
      }
      return true;
    };
    const file = path.join(ws.src, 'tail.bin');
    const sha = await randomFile(file, size);
    const { proc: receiver, port } = await startReceiver(ws.out, ['--once']);
    const relay = await relayTo(port, { seed: 3, filter });
    const peer = `127.0.0.1:${relay.port}`;
    // The default idle timeout (30 s) on both sides: recovery must come from the probe timeout.
    const sender = sockxfer(['send', file, peer, '--udp', '--json']);
    const code = await exitWithin(sender, 20_000, 'the sender whose tail was dropped');
    const exitedAt = performance.now();
    const receiverCode = await exitWithin(receiver, 10_000, 'the --once receiver after the sender finished');
    const context = `tail dropped at ${tailAt}, sender exited at ${exitedAt}; dropped chunks ${[...droppedChunks].join(',')}, resent ${[...resentChunks].join(',')}; dropped stream pieces ${JSON.stringify(droppedStream)}; relay stats: ${JSON.stringify(relay.stats())}\nsender stderr:\n${sender.stderr()}\nreceiver stderr:\n${receiver.stderr()}`;
    expect(code, context).toBe(0);
    const { senderDone } = await expectDelivered({ sent: { code, events: sender.events, stderr: sender.stderr(), last: sender.events.at(-1) }, receiver, receiverCode }, 'tail.bin', sha, size, peer);
    expect(maxChunk, context).toBe(lastChunk);
    expect([...droppedChunks].sort((a, b) => a - b), context).toEqual([296, 297, 298, 299, 300]);
    expect([...resentChunks].sort((a, b) => a - b), context).toEqual([296, 297, 298, 299, 300]);
    expect(droppedStream.forward, context).toBeGreaterThan(0);
    expect(droppedStream.backward, context).toBeGreaterThan(0);
    const stats = statsOf(senderDone);
    expect(stats.retransmitted, context).toBeGreaterThanOrEqual(TAIL);
    // Nothing after the tail reached the receiver, so no ACK could reveal the loss: only a probe could.
    expect(stats.probes, context).toBeGreaterThan(0);
    // Recovered in a few probe timeouts, not by waiting anywhere near the 30 s idle timeout.
    expect(exitedAt - tailAt!, context).toBeLessThan(5000);
  });

  it("the receiver's ACKs lost from the last chunk until its VERDICT: the --once receiver's closing ACK and CLOSE still let the sender finish at once", async () => {
    // Every ACK the receiver sends between the first copy of the last chunk and its VERDICT
    // is dropped, so when the verdict arrives the sender still waits for ACKs of its last
    // packets. The receiver's closing ACK (and CLOSE) after the verdict must settle that: the
    // sender exits right away instead of waiting out its close grace period.
    const size = 1024 * 1024;
    const lastChunk = Math.ceil(size / DEFAULT_UDP_CHUNK) - 1;
    let dropFrom: number | null = null;
    let verdictAt: number | null = null;
    let acksDropped = 0;
    const after: string[] = [];
    const filter = (direction: Direction, datagram: Buffer, now: number): boolean => {
      const type = datagram[5];
      if (verdictAt !== null) after.push(`${(now - verdictAt).toFixed(1)} ms ${direction} type ${type}`);
      if (direction === 'forward' && type === PACKET_TYPE.data && Number(datagram.readBigUInt64BE(CHUNK_OFFSET)) === lastChunk) dropFrom ??= now;
      if (direction === 'backward' && dropFrom !== null && verdictAt === null) {
        if (type === PACKET_TYPE.stream) {
          verdictAt = now;
          return true;
        }
        if (type === PACKET_TYPE.ack) {
          acksDropped++;
          return false;
        }
      }
      return true;
    };
    const file = path.join(ws.src, 'closing.bin');
    const sha = await randomFile(file, size);
    const { proc: receiver, port } = await startReceiver(ws.out, ['--once']);
    const relay = await relayTo(port, { seed: 9, filter });
    const peer = `127.0.0.1:${relay.port}`;
    const sender = sockxfer(['send', file, peer, '--udp', '--json']);
    const code = await exitWithin(sender, 20_000, 'the sender');
    const exitedAt = performance.now();
    const receiverCode = await exitWithin(receiver, 10_000, 'the --once receiver after the sender finished');
    const context = `${acksDropped} ACKs dropped; the verdict passed at ${verdictAt}, the sender exited at ${exitedAt.toFixed(1)}; datagrams after the verdict:\n${after.join('\n')}\nsender stderr:\n${sender.stderr()}\nreceiver stderr:\n${receiver.stderr()}`;
    expect(code, context).toBe(0);
    await expectDelivered({ sent: { code, events: sender.events, stderr: sender.stderr(), last: sender.events.at(-1) }, receiver, receiverCode }, 'closing.bin', sha, size, peer);
    // Whether the receiver sent any ACK in that window depends on timing; either way, when the
    // verdict arrived the sender's last chunk was not acknowledged (its ACK could only come after
    // dropFrom, and every one of those was dropped), which is the situation under test.
    expect(verdictAt, context).not.toBeNull();
    // A few round trips on loopback, not the 5 s close grace period.
    expect(exitedAt - verdictAt!, context).toBeLessThan(2000);
  });

  it('--cc reno through 1% loss both ways (seed 11)', async () => {
    const size = 3 * 1024 * 1024;
    const run = await udpOnce('reno.bin', size, { sendArgs: ['--cc', 'reno'], via: (port) => relayTo(port, { forward: { loss: 0.01 }, backward: { loss: 0.01 }, seed: 11 }) });
    const stats = run.relay!.stats();
    const context = `relay stats: ${JSON.stringify(stats)}\nsender stderr:\n${run.sent.stderr}\nreceiver stderr:\n${run.receiver.stderr()}`;
    expect(run.sent.code, context).toBe(0);
    const { senderDone } = await expectDelivered(run, 'reno.bin', run.sha, size, run.peer);
    expect(stats.forward.droppedLoss, context).toBeGreaterThan(0);
    expect(statsOf(senderDone).congestionControl).toBe('reno');
    expect(statsOf(senderDone).retransmitted, context).toBeGreaterThan(0);
    expect(run.sent.stderr).toMatch(/\(reno\)$/m);
  });
});

describe('many senders', () => {
  it('8 UDP senders at once into one receiver: 8 files byte-identical, 8 done events', async () => {
    const { proc: receiver, address } = await startReceiver(ws.out);
    const files = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const name = `many-${i}.bin`;
        const size = 1024 * 1024 + i * 4099;
        const file = path.join(ws.src, name);
        return { name, size, file, sha: await randomFile(file, size) };
      }),
    );
    const results = await Promise.all(files.map((f) => send(f.file, address, ['--udp'])));
    results.forEach((r, i) => {
      expect(r.code, `sender ${i}: ${r.stderr}`).toBe(0);
      expect(r.last).toMatchObject({ event: 'done', name: files[i]!.name, bytes: files[i]!.size, transport: 'udp' });
    });
    const done = await within(
      waitForCount(receiver, (e) => e.event === 'done', 8),
      10_000,
      () => `8 done events from the receiver; stderr:\n${receiver.stderr()}`,
    );
    expect(done.map((e) => e.name).sort()).toEqual(files.map((f) => f.name).sort());
    expect(done.every((e) => e.transport === 'udp')).toBe(true);
    expect(receiver.events.filter((e) => e.event === 'error')).toEqual([]);
    // Eight distinct sessions from eight distinct ports.
    expect(new Set(done.map((e) => e.session)).size).toBe(8);
    expect(new Set(done.map((e) => e.peer)).size).toBe(8);
    for (const f of files) expect(await sha256File(path.join(ws.out, f.name)), f.name).toBe(f.sha);
    expect(await listDir(ws.out)).toEqual(files.map((f) => f.name).sort());
  });
});

describe('a receiver killed mid-transfer (SIGKILL)', () => {
  /** Starts sending a 256 MiB sparse file at 20 Mbit/s (far too long to finish) and resolves once the receiver has written part of it. */
  async function midTransfer(viaRelay: boolean) {
    const file = path.join(ws.src, 'big.bin');
    await sparseFile(file, 256 * 1024 * 1024);
    const { proc: receiver, port, address } = await startReceiver(ws.out);
    const relay = viaRelay ? await relayTo(port, { seed: 5 }) : undefined;
    const peer = relay ? `127.0.0.1:${relay.port}` : address;
    const sender = sockxfer(['send', file, peer, '--udp', '--json', '--timeout', '3', '--rate', '20M']);
    await receiver.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0);
    receiver.child.kill('SIGKILL');
    expect(await receiver.exited).toBe(128 + 9);
    return { sender, killedAt: performance.now(), relay };
  }

  it('through the relay (no ICMP reaches the sender): the sender exits 4, E_TIMEOUT, within its --timeout of 3 s', async () => {
    const { sender, killedAt, relay } = await midTransfer(true);
    const code = await exitWithin(sender, 8000, 'the sender after the receiver was killed');
    const elapsed = performance.now() - killedAt;
    const context = `exited ${elapsed.toFixed(0)} ms after the kill; relay stats: ${JSON.stringify(relay!.stats())}\nstderr:\n${sender.stderr()}`;
    expect(code, context).toBe(4);
    expect(sender.events.at(-1), context).toMatchObject({ event: 'error', code: 'E_TIMEOUT', exitCode: 4 });
    // The idle timeout counts from the last packet, which came just before the kill.
    expect(elapsed, context).toBeLessThan(3000 + 2000);
    // Whatever the receiver left, nothing is at the final name: partial data may stay after SIGKILL, but only inside .sockxfer-partial.
    expect((await listDir(ws.out)).filter((n) => n !== PARTIAL)).toEqual([]);
  });

  it('directly: the sender exits 3 (port unreachable) or 4 (timeout)', async () => {
    const { sender, killedAt } = await midTransfer(false);
    const code = await exitWithin(sender, 8000, 'the sender after the receiver was killed');
    const elapsed = performance.now() - killedAt;
    const context = `exited ${elapsed.toFixed(0)} ms after the kill\nstderr:\n${sender.stderr()}`;
    expect([3, 4], context).toContain(code);
    expect(sender.events.at(-1), context).toMatchObject({ event: 'error', exitCode: code });
    expect(elapsed, context).toBeLessThan(3000 + 2000);
    expect((await listDir(ws.out)).filter((n) => n !== PARTIAL)).toEqual([]);
  });
});

describe('hostile datagrams', () => {
  it('empty, tiny, random and forged datagrams to an idle --once receiver: ignored, not counted as its transfer; a real transfer then succeeds', async () => {
    const { proc: receiver, port, address } = await startReceiver(ws.out, ['--once']);
    const socket = dgram.createSocket('udp4');
    sockets.push(socket);
    const replies: Buffer[] = [];
    let onReply: (() => void) | null = null;
    socket.on('message', (msg) => {
      replies.push(msg);
      onReply?.();
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    const sendTo = (buf: Buffer) => new Promise<void>((resolve, reject) => socket.send(buf, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));

    const hostile: Buffer[] = [Buffer.alloc(0), Buffer.from([0x53]), Buffer.from('SXF')];
    // 200 seeded random datagrams of 0 to 1500 bytes.
    const rand = mulberry32(0x5eed);
    for (let i = 0; i < 200; i++) hostile.push(seededBytes(Math.floor(rand() * 1501), 1000 + i));
    // Datagrams that look right up to a point: the magic and version, then random bytes.
    for (let i = 0; i < 20; i++) {
      const b = seededBytes(28 + Math.floor(rand() * 1200), 2000 + i);
      b.writeUInt32BE(0x53584655, 0);
      b[4] = 1;
      hostile.push(b);
    }
    // Well-formed packets (CRC and all) for sessions that do not exist here.
    const session = 0x0123456789abcdefn;
    hostile.push(
      encodeDataPacket(session, 1, 0, 0, 0, seededBytes(1000, 1)),
      encodePacket(session, 2, { type: 'stream', offset: 0, bytes: seededBytes(100, 2) }),
      encodePacket(session, 3, { type: 'ack', largest: 10, ackDelayMicros: 0, maxData: 1 << 30, ranges: [{ start: 0, end: 10 }] }),
      encodePacket(session, 4, { type: 'ping' }),
      encodePacket(session, 5, { type: 'close', code: 0, message: 'bye' }),
      encodePacket(session, 6, { type: 'ready', window: 1 << 20, datagramSize: 1200 }),
      encodePacket(session, 7, { type: 'retry', cookie: seededBytes(20, 3) }),
      // An INITIAL with a forged cookie: answered with a RETRY at most, never a connection.
      encodePacket(session, 8, { type: 'initial', datagramSize: 1200, cookie: seededBytes(20, 4) }),
    );
    for (const b of hostile) await sendTo(b);

    // A plain INITIAL last: the RETRY it gets back shows the receiver has read everything before it.
    const probeSession = 0x0fedcba987654321n;
    const sawRetry = new Promise<void>((resolve) => {
      onReply = () => {
        if (replies.some((r) => {
          const d = decodePacket(r);
          return d.ok && d.packet.session === probeSession && d.packet.body.type === 'retry';
        })) resolve();
      };
    });
    await sendTo(encodePacket(probeSession, 0, { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) }));
    await within(sawRetry, 5000, () => `a RETRY for the probe INITIAL; replies so far: ${replies.length}; receiver stderr:\n${receiver.stderr()}`);

    // Only RETRY packets ever came back, and only to INITIALs.
    for (const r of replies) {
      const d = decodePacket(r);
      expect(d.ok && d.packet.body.type).toBe('retry');
    }
    // Still running: garbage is not its one transfer.
    expect(receiver.child.exitCode).toBeNull();
    expect(receiver.events.filter((e) => !startupEvent(e))).toEqual([]);

    const file = path.join(ws.src, 'after.bin');
    const size = 500_000;
    const sha = await randomFile(file, size);
    const sent = await send(file, address, ['--udp']);
    const receiverCode = await exitWithin(receiver, 15_000, 'the --once receiver after the sender finished');
    await expectDelivered({ sent, receiver, receiverCode }, 'after.bin', sha, size, address);
    expect(receiver.stderr()).not.toMatch(/internal error/);
  });
});

describe('the wrong transport', () => {
  it('a --transport tcp receiver: one listening event (tcp); a --udp sender fails fast with exit 3 (port unreachable) or 4', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10_000);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--transport', 'tcp']);
    const sender = sockxfer(['send', file, address, '--udp', '--json', '--timeout', '5']);
    const code = await exitWithin(sender, 10_000, 'a UDP sender to a TCP-only receiver');
    expect([3, 4], sender.stderr()).toContain(code);
    expect(sender.events.at(-1)).toMatchObject({ event: 'error', code: code === 3 ? 'E_CONNECT_REFUSED' : 'E_TIMEOUT', exitCode: code });
    expect(sender.events.filter((e) => e.event !== 'error')).toEqual([]);
    expect(receiver.events.filter((e) => e.event === 'listening')).toEqual([{ event: 'listening', host: '127.0.0.1', port: expect.any(Number), transport: 'tcp' }]);
    expect(receiver.events.filter((e) => !startupEvent(e))).toEqual([]);
    expect(receiver.child.exitCode).toBeNull();
    expect(await listDir(ws.out)).toEqual([]);
  });

  it('a --transport udp receiver: one listening event (udp); a TCP sender gets exit 3, E_CONNECT_REFUSED', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10_000);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--transport', 'udp']);
    const sender = sockxfer(['send', file, address, '--json', '--timeout', '5']);
    const code = await exitWithin(sender, 10_000, 'a TCP sender to a UDP-only receiver');
    expect(code, sender.stderr()).toBe(3);
    expect(sender.events.at(-1)).toMatchObject({ event: 'error', code: 'E_CONNECT_REFUSED', exitCode: 3 });
    expect(receiver.events.filter((e) => e.event === 'listening')).toEqual([{ event: 'listening', host: '127.0.0.1', port: expect.any(Number), transport: 'udp' }]);
    expect(receiver.events.filter((e) => !startupEvent(e))).toEqual([]);
    expect(receiver.child.exitCode).toBeNull();
    expect(await listDir(ws.out)).toEqual([]);
  });

  it('the default (both): one listening event per transport, on the same port', async () => {
    const { proc: receiver, port } = await startReceiver(ws.out);
    const listening = await within(
      waitForCount(receiver, (e) => e.event === 'listening', 2),
      5000,
      () => `two listening events; stderr:\n${receiver.stderr()}`,
    );
    expect(listening).toEqual([
      { event: 'listening', host: '127.0.0.1', port, transport: 'tcp' },
      { event: 'listening', host: '127.0.0.1', port, transport: 'udp' },
    ]);
  });
});
