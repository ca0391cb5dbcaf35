/**
 * A receiver that hostile input cannot hurt: its resources. A HELLO trickled in a byte at a time
 * meets an absolute handshake deadline; 10,000 idle TCP connections and 10,000 idle UDP sessions
 * cost a bounded set of connections and never lock an honest sender out; a flood of replayed ACKs
 * does not multiply a UDP sender's retransmissions. Every attack ends with the receiver alive, a
 * clear error code, and honest transfers arriving byte for byte during and after it.
 *
 * Real sockets on 127.0.0.1 port 0; an in-process Receiver whose events are queued (plus one
 * test of the CLI's --handshake-timeout); the 10,000 TCP connections come from a child process.
 * Waits are on events, bounded by `within`; the only timers are the attackers' own pacing and
 * resends.
 */
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { dir, type DirectoryResult } from 'tmp-promise';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import { StreamDeframer, encodeFrameToBuffer, type Frame } from '../../src/protocol/index.js';
import { DEFAULT_MAX_PENDING, DEFAULT_MAX_SESSIONS, MAX_CLOSING, Receiver, type ReceiverObserver, type ReceiverOptions } from '../../src/transfer/receiver.js';
import { sendFile } from '../../src/transfer/sender.js';
import type { TransportKind } from '../../src/transport/index.js';
import type { UdpConnection } from '../../src/transport/udp/connection.js';
import { DEFAULT_UDP_OPTIONS, MAX_CONNECTIONS, connectUdp, listenUdp, type UdpListener } from '../../src/transport/udp/endpoint.js';
import { decodePacket, encodePacket, type AckBody } from '../../src/transport/udp/packet.js';
import { LossRecovery, newSentPacket } from '../../src/transport/udp/recovery.js';
import { startReceiver as startCliReceiver, stopAll, within } from '../helpers/cli.js';
import { seededBytes } from '../helpers/seeded.js';
import { Queue, type ReceiverEvents } from '../transfer/harness.js';

const HOST = '127.0.0.1';
/** The receiver's bound on open connections: pending, in a transfer, or being ended. */
const OPEN_BOUND = DEFAULT_MAX_PENDING + DEFAULT_MAX_SESSIONS + MAX_CLOSING;

let base: DirectoryResult;
let out: string;
let receiver: Receiver | null = null;
let port = 0;
let events: ReceiverEvents;
/** Whatever a test opens, closed after it. */
const sockets = new Set<net.Socket>();
const udpSockets = new Set<dgram.Socket>();
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(async () => {
  base = await dir({ unsafeCleanup: true });
  out = path.join(base.path, 'out');
  await fsp.mkdir(path.join(base.path, 'src'));
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  for (const s of udpSockets) s.close();
  udpSockets.clear();
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAll();
  await receiver?.stop(new SockxferError('E_INTERRUPTED', 'test over'));
  receiver = null;
  await base.cleanup();
});

/** Connections the receiver has taken so far, and who waits for a count. */
let connectionsSeen = 0;
let connectionWaiter: { count: number; resolve: () => void } | null = null;

/** Resolves once the receiver has taken `count` connections in all. */
function connectionsReach(count: number): Promise<void> {
  if (connectionsSeen >= count) return Promise.resolve();
  return new Promise((resolve) => (connectionWaiter = { count, resolve }));
}

/** A receiver on TCP and UDP (one port) into `out`, every event queued, its connections counted. */
async function start(options: Partial<ReceiverOptions> = {}): Promise<void> {
  events = { failed: new Queue(), done: new Queue(), start: new Queue(), progress: new Queue(), entry: new Queue() };
  connectionsSeen = 0;
  connectionWaiter = null;
  const observer: ReceiverObserver = {
    connection: () => {
      connectionsSeen++;
      if (connectionWaiter !== null && connectionsSeen >= connectionWaiter.count) {
        const w = connectionWaiter;
        connectionWaiter = null;
        w.resolve();
      }
    },
    failed: (peer, info, error) => events.failed.push({ peer, info, error }),
    done: (result) => events.done.push(result),
    start: (info) => events.start.push(info),
    progress: (_info, done) => events.progress.push(done),
    entry: (_info, entry) => events.entry.push(entry),
  };
  receiver = new Receiver({ dir: out, host: HOST, port: 0, transports: ['tcp', 'udp'], once: false, policy: 'refuse', timeoutMs: 10_000, ...options }, observer);
  const addresses = await receiver.start();
  expect(addresses.map((a) => a.transport)).toEqual(['tcp', 'udp']);
  port = addresses[0]!.port;
}

/** Sends `size` seeded bytes as `name` over `kind` and checks they arrived byte for byte. */
async function honest(name: string, kind: TransportKind, size = 200_000): Promise<void> {
  const content = seededBytes(size, name.length * 7919 + size);
  const file = path.join(base.path, 'src', name);
  await fsp.writeFile(file, content);
  const result = await sendFile({ file, target: { host: HOST, port }, hash: 'xxh128', chunkSize: 64 * 1024, timeoutMs: 10_000, transport: kind, udp: DEFAULT_UDP_OPTIONS });
  expect(result).toMatchObject({ name, committed: 1, failed: 0, transport: kind });
  expect((await fsp.readFile(path.join(out, name))).equals(content), `${name} arrived byte for byte`).toBe(true);
}

function helloBytes(session: bigint): Buffer {
  return encodeFrameToBuffer({ type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'slowloris/1' }, session);
}

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  udpSockets.add(s);
  await new Promise<void>((resolve) => s.bind(0, HOST, resolve));
  s.setRecvBufferSize(4 * 1024 * 1024);
  return s;
}

/**
 * Opens UDP `sessions` from `socket` the way a sender does: INITIAL → RETRY (a cookie) →
 * INITIAL with the cookie → READY. What got no answer is sent again every 250 ms, 20 times at most.
 */
function openUdpSessions(socket: dgram.Socket, to: number, sessions: bigint[]): Promise<void> {
  /** null: waiting for the RETRY; a cookie: waiting for the READY. */
  const waiting = new Map<bigint, Buffer | null>(sessions.map((s) => [s, null]));
  const initial = (s: bigint, cookie: Buffer | null) => socket.send(encodePacket(s, 0, { type: 'initial', datagramSize: 1200, cookie: cookie ?? Buffer.alloc(0) }), to, HOST);
  return new Promise((resolve, reject) => {
    let resends = 0;
    const onMessage = (msg: Buffer) => {
      const d = decodePacket(msg);
      if (!d.ok || !waiting.has(d.packet.session)) return;
      const s = d.packet.session;
      const body = d.packet.body;
      if (body.type === 'retry' && waiting.get(s) === null) {
        const cookie = Buffer.from(body.cookie);
        waiting.set(s, cookie);
        initial(s, cookie);
      } else if (body.type === 'ready') {
        waiting.delete(s);
        if (waiting.size === 0) finish(null);
      }
    };
    const timer = setInterval(() => {
      if (++resends > 20) return finish(new Error(`${waiting.size} of ${sessions.length} UDP sessions got no READY after 20 resends`));
      for (const [s, cookie] of waiting) initial(s, cookie);
    }, 250);
    function finish(err: Error | null) {
      clearInterval(timer);
      socket.off('message', onMessage);
      if (err) reject(err);
      else resolve();
    }
    socket.on('message', onMessage);
    for (const s of sessions) initial(s, null);
  });
}

/** Runs an honest transfer in the background: resolves with its failure, or null (never rejects unawaited). */
function honestMeanwhile(name: string, kind: TransportKind): Promise<unknown> {
  return honest(name, kind).then(
    () => null,
    (err: unknown) => err,
  );
}

interface AttackerReport {
  batch: number;
  opened: number;
  errors: number;
}

/**
 * Opens `total` TCP connections to `port` from a child process, `batch` at a time (each batch
 * after a line on its stdin), and leaves them idle: it never writes, never reads, never closes
 * (until its stdin ends). Its own process, so that the receiver's descriptors can be counted
 * alone (the fd limit here is 20,000, `ulimit -n`: room for the attacker's 10,000). Batches wait
 * for the receiver to take the one before: a connect is done for the client before the server
 * accepts it, and an attacker that outruns the accepts overflows the kernel's listen queue,
 * whose dropped SYNs come back a second later: a test of the kernel, and a slow one.
 */
function spawnTcpAttacker(to: number, total: number, batch: number): { reports: AsyncIterable<AttackerReport>; next: () => void } {
  const code = `
    import net from 'node:net';
    import readline from 'node:readline';
    const [port, total, batch] = process.argv.slice(1).map(Number);
    const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    const held = [];
    let errors = 0;
    for (let b = 0; b < total / batch; b++) {
      if (b > 0 && (await lines.next()).done) process.exit(0);
      await Promise.all(Array.from({ length: batch }, () => new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        held.push(s);
        s.on('error', () => {});
        s.once('connect', resolve);
        s.once('error', () => { errors++; resolve(); });
      })));
      process.stdout.write(JSON.stringify({ batch: b, opened: held.length, errors }) + '\\n');
    }
    while (!(await lines.next()).done);
    for (const s of held) s.resetAndDestroy();
    process.exit(0);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, String(to), String(total), String(batch)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  cleanups.push(async () => {
    child.stdin!.end();
    child.kill('SIGKILL');
    await exited;
  });
  const lines = readline.createInterface({ input: child.stdout! });
  return {
    reports: (async function* () {
      for await (const line of lines) yield JSON.parse(line) as AttackerReport;
    })(),
    next: () => child.stdin!.write('next\n'),
  };
}

/** The soft limit on open files that child processes inherit (`ulimit -n`). */
/** The codes of the next `count` failures the receiver reports, counted; `each` runs after every one. */
async function failureCodes(count: number, what: string, each: () => void = () => {}): Promise<Map<string, number>> {
  const codes = new Map<string, number>();
  await within(
    (async () => {
      for (let i = 0; i < count; i++) {
        const f = await events.failed.next();
        codes.set(f.error.code, (codes.get(f.error.code) ?? 0) + 1);
        each();
      }
    })(),
    20_000,
    () => `${count} ${what} to be reported (so far ${JSON.stringify([...codes])})`,
  );
  return codes;
}

function fdLimit(): number {
  const text = execFileSync('sh', ['-c', 'ulimit -n']).toString().trim();
  return text === 'unlimited' ? Infinity : Number(text);
}

/** Open file descriptors of this process (the receiver's and the attackers' sockets among them). */
function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/**
 * Connects to `to` and writes a HELLO one byte every 200 ms (each byte resets the receiver's idle
 * timeout). Resolves when the receiver closes the connection: with the frames it sent, the time
 * from connect to close, and how many bytes of the HELLO went out.
 */
async function trickleHello(to: number): Promise<{ helloBytes: number; done: Promise<{ frames: Frame[]; elapsed: number; sent: number }> }> {
  const hello = helloBytes(0x510e_0000_0000_0001n);
  const socket = net.connect({ host: HOST, port: to });
  sockets.add(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const connectedAt = performance.now();
  const frames: Frame[] = [];
  const deframer = new StreamDeframer();
  socket.on('data', (b: Buffer) => {
    for (const d of deframer.push(b)) frames.push(d.frame);
  });
  let sent = 0;
  const trickle = setInterval(() => {
    if (sent < hello.length && !socket.destroyed) socket.write(hello.subarray(sent, ++sent));
  }, 200);
  cleanups.push(() => clearInterval(trickle));
  const done = new Promise<{ frames: Frame[]; elapsed: number; sent: number }>((resolve) =>
    socket.once('close', () => {
      clearInterval(trickle);
      resolve({ frames, elapsed: performance.now() - connectedAt, sent });
    }),
  );
  return { helloBytes: hello.length, done };
}

// ---- 1. A HELLO that trickles in ----------------------------------------------------------

describe('a sender that trickles its HELLO, one byte every 200 ms', () => {
  const HANDSHAKE_MS = 1000;
  /** Shorter than the handshake deadline, longer than the trickle's gaps: the idle timeout never fires. */
  const IDLE_MS = 600;

  it('over TCP: gets ERROR 400 (E_TIMEOUT) and a close at the handshake deadline, not later; honest senders are served meanwhile and after', async () => {
    await start({ handshakeTimeoutMs: HANDSHAKE_MS, timeoutMs: IDLE_MS });
    const slow = await trickleHello(port);
    await honest('during.bin', 'tcp');
    const { frames, elapsed, sent } = await within(slow.done, HANDSHAKE_MS + 2000, () => 'the trickling connection to be closed');
    expect(frames).toEqual([{ type: 'error', code: 400, message: expect.stringMatching(/^no HELLO from 127\.0\.0\.1:\d+ within the handshake timeout of 1 s$/) }]);
    // Each byte reset the idle timeout; the deadline held anyway, long before the HELLO was whole.
    expect(elapsed).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
    expect(sent).toBeLessThan(slow.helloBytes);
    const failure = await within(events.failed.next(), 2000, () => 'the receiver to report the timeout');
    expect(failure.info).toBeNull();
    expect(failure.error.code).toBe('E_TIMEOUT');
    expect(receiver!.pendingHandshakes).toBe(0);
    await honest('after.bin', 'tcp');
    expect(events.failed.length).toBe(0);
  });

  it('sockxfer receive --handshake-timeout 1: the CLI receiver cuts the trickle off at 1 s with ERROR 400, reports E_TIMEOUT, and keeps serving', async () => {
    await fsp.mkdir(out);
    const cli = await startCliReceiver(out, ['--handshake-timeout', '1', '--timeout', '5']);
    const slow = await trickleHello(cli.port);
    const { frames, elapsed, sent } = await within(slow.done, HANDSHAKE_MS + 2000, () => `the trickling connection to be closed; stderr:\n${cli.proc.stderr()}`);
    expect(frames).toEqual([{ type: 'error', code: 400, message: expect.stringMatching(/within the handshake timeout of 1 s$/) }]);
    expect(elapsed).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
    expect(sent).toBeLessThan(slow.helloBytes);
    expect(await cli.proc.waitFor((e) => e.event === 'error')).toMatchObject({ code: 'E_TIMEOUT', exitCode: 4, peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(cli.proc.child.exitCode).toBeNull();
    port = cli.port;
    await honest('after-cli.bin', 'tcp');
  });

  it('over UDP: gets ERROR 400 on the stream and a CLOSE 400 at the handshake deadline; honest senders are served meanwhile and after', async () => {
    await start({ handshakeTimeoutMs: HANDSHAKE_MS, timeoutMs: IDLE_MS });
    const session = 0x510e_0000_0000_0002n;
    const hello = helloBytes(session);
    const socket = await udpSocket();
    await openUdpSessions(socket, port, [session]);
    const openedAt = performance.now();
    const stream = new Map<number, Buffer>();
    const closed = new Promise<{ code: number; message: string; at: number }>((resolve) => {
      socket.on('message', (msg: Buffer) => {
        const d = decodePacket(msg);
        if (!d.ok || d.packet.session !== session) return;
        const body = d.packet.body;
        if (body.type === 'stream') stream.set(body.offset, Buffer.from(body.bytes));
        if (body.type === 'close') resolve({ code: body.code, message: body.message, at: performance.now() - openedAt });
      });
    });
    let sent = 0;
    let pn = 1;
    const trickle = setInterval(() => {
      if (sent < hello.length) socket.send(encodePacket(session, pn++, { type: 'stream', offset: sent, bytes: hello.subarray(sent, ++sent) }), port, HOST);
    }, 200);
    cleanups.push(() => clearInterval(trickle));

    await honest('during-udp.bin', 'udp');
    // The ERROR is resent until acknowledged (this peer never does) for up to a second, then the CLOSE.
    const close = await within(closed, HANDSHAKE_MS + 3000, () => `a CLOSE for the trickling session (${sent} bytes sent)`);
    clearInterval(trickle);
    expect(close.code).toBe(400);
    expect(close.message).toMatch(/within the handshake timeout of 1 s/);
    expect(close.at).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
    expect(sent).toBeLessThan(hello.length);
    const frames = new StreamDeframer().push(Buffer.concat([...stream.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b))).map((d) => d.frame);
    expect(frames).toEqual([{ type: 'error', code: 400, message: expect.stringMatching(/within the handshake timeout of 1 s/) }]);
    const failure = await within(events.failed.next(), 2000, () => 'the receiver to report the timeout');
    expect(failure.error.code).toBe('E_TIMEOUT');
    await honest('after-udp.bin', 'udp');
    expect(events.failed.length).toBe(0);
  });
});

// ---- 2. Floods of idle connections ----------------------------------------------------------

describe('10,000 idle connections', () => {
  it('over TCP: at most 256 wait for a HELLO (the oldest is dropped with E_BUSY), open connections and file descriptors stay bounded, honest senders get through during and after', async () => {
    await start();
    const BATCH = 125;
    // The attacker holds every connection it opens: 10,000, or what its fd limit allows (20,000
    // on the machine these tests were written on, so the full 10,000).
    const TOTAL = Math.min(10_000, Math.floor((fdLimit() - 256) / BATCH) * BATCH);
    expect(TOTAL, `the fd limit (${fdLimit()}) leaves room for a flood ten times the pending cap`).toBeGreaterThanOrEqual(24 * BATCH);
    const fdsBefore = openFds();
    const attacker = spawnTcpAttacker(port, TOTAL, BATCH);
    let maxOpen = 0;
    let maxFds = 0;
    let during: Promise<unknown> | null = null;
    let last: AttackerReport | null = null;
    await within(
      (async () => {
        for await (const report of attacker.reports) {
          last = report;
          expect(receiver!.pendingHandshakes).toBeLessThanOrEqual(DEFAULT_MAX_PENDING);
          expect(receiver!.openConnections).toBeLessThanOrEqual(OPEN_BOUND);
          maxOpen = Math.max(maxOpen, receiver!.openConnections);
          maxFds = Math.max(maxFds, openFds());
          if (report.batch === 20) during = honestMeanwhile('during-flood.bin', 'tcp');
          if (report.opened === TOTAL) break;
          await connectionsReach(report.opened);
          attacker.next();
        }
      })(),
      25_000,
      () => `the attacker to open ${TOTAL} connections (last report ${JSON.stringify(last)})`,
    );
    expect(last).toEqual({ batch: TOTAL / BATCH - 1, opened: TOTAL, errors: 0 });
    expect(await within(during!, 20_000, () => 'the honest transfer during the flood')).toBeNull();
    // Every connection but the newest 256 was dropped and reported, with a clear code.
    const dropped = TOTAL - DEFAULT_MAX_PENDING;
    const codes = await failureCodes(dropped, 'dropped connections', () => (maxFds = Math.max(maxFds, openFds())));
    expect([...codes]).toEqual([['E_BUSY', dropped]]);
    expect(receiver!.pendingHandshakes).toBe(DEFAULT_MAX_PENDING);
    expect(maxOpen).toBeGreaterThanOrEqual(DEFAULT_MAX_PENDING);
    // The attacker never reads nor closes, so each dropped connection would hold a descriptor
    // here for the length of a close's grace, were it not for the bound on connections being ended.
    expect(maxFds - fdsBefore).toBeLessThanOrEqual(OPEN_BOUND + 32);
    await honest('after-flood.bin', 'tcp');
    expect(receiver!.activeSessions).toBe(0);
  });

  it('over UDP (each with the cookie handshake): at most 256 wait for a HELLO, open connections stay bounded, honest senders get through during and after', async () => {
    await start();
    const TOTAL = 10_000;
    const BATCH = 125;
    const attackers = await Promise.all([udpSocket(), udpSocket(), udpSocket(), udpSocket()]);
    let during: Promise<unknown> | null = null;
    let maxOpen = 0;
    for (let b = 0; b < TOTAL / BATCH; b++) {
      // Distinct sessions, and distinct low 32 bits (the endpoint's fast lookup key).
      const sessions = Array.from({ length: BATCH }, (_, i) => (0xf100dn << 32n) | BigInt(b * BATCH + i + 1));
      await openUdpSessions(attackers[b % attackers.length]!, port, sessions);
      expect(receiver!.pendingHandshakes).toBeLessThanOrEqual(DEFAULT_MAX_PENDING);
      expect(receiver!.openConnections).toBeLessThanOrEqual(OPEN_BOUND);
      maxOpen = Math.max(maxOpen, receiver!.openConnections);
      if (b === 20) during = honestMeanwhile('during-udp-flood.bin', 'udp');
    }
    expect(await within(during!, 20_000, () => 'the honest UDP transfer during the flood')).toBeNull();
    // Well below the UDP endpoint's own table (MAX_CONNECTIONS), which is therefore never what turns anyone away.
    expect(maxOpen).toBeLessThan(MAX_CONNECTIONS);
    const dropped = TOTAL - DEFAULT_MAX_PENDING;
    const codes = await failureCodes(dropped, 'dropped sessions');
    expect([...codes]).toEqual([['E_BUSY', dropped]]);
    expect(receiver!.pendingHandshakes).toBe(DEFAULT_MAX_PENDING);
    await honest('after-udp-flood.bin', 'udp');
  });
});

describe('the UDP endpoint table (the backstop behind the receiver caps)', () => {
  it(`a full table (${MAX_CONNECTIONS}) turns a validated sender away with CLOSE E_BUSY (exit 4), and a destroyed or aborted connection leaves it promptly`, async () => {
    const held: UdpConnection[] = [];
    const listener: UdpListener = await listenUdp({ host: HOST, port: 0 }, (c) => held.push(c));
    cleanups.push(async () => {
      for (const c of held) c.destroy();
      await listener.close();
    });
    const attacker = await udpSocket();
    for (let b = 0; b < MAX_CONNECTIONS / 128; b++) {
      await openUdpSessions(attacker, listener.port, Array.from({ length: 128 }, (_, i) => 0xab00_0000_0000n + BigInt(b * 128 + i)));
    }
    expect(listener.connections).toBe(MAX_CONNECTIONS);
    const connect = () => connectUdp({ host: HOST, port: listener.port }, { ...DEFAULT_UDP_OPTIONS, timeoutMs: 5000, session: 0x600d_0000_0000_0001n });
    const refused = await connect().then(
      () => null,
      (err: SockxferError) => err,
    );
    expect(refused).toBeInstanceOf(SockxferError);
    expect(refused!.code).toBe('E_BUSY');
    expect(refused!.exitCode).toBe(4);
    expect(refused!.message).toMatch(/refused the connection over UDP: this receiver serves 1024 UDP connections at once already/);

    held.shift()!.destroy();
    expect(listener.connections).toBe(MAX_CONNECTIONS - 1);
    // Its peer never acknowledges the ERROR: the abort gives up after its grace and the entry goes.
    await within(held.shift()!.abort(new SockxferError('E_BUSY', 'dropped')), 3000, () => 'an abort to finish');
    expect(listener.connections).toBe(MAX_CONNECTIONS - 2);
    const honestConnection = await connect();
    expect(listener.connections).toBe(MAX_CONNECTIONS - 1);
    honestConnection.destroy();
  });
});

// ---- 3. Duplicate ACKs ----------------------------------------------------------------------

/**
 * A plain UDP forwarder between one sender and the receiver. Every datagram from the receiver
 * goes to `backward`, which returns what to pass on to the sender instead (copies, replays).
 */
async function startForwarder(to: number, backward: (datagram: Buffer) => Buffer[]): Promise<{ port: number; replayed: () => number }> {
  const front = await udpSocket();
  const upstream = await udpSocket();
  front.setSendBufferSize(4 * 1024 * 1024);
  await new Promise<void>((resolve) => upstream.connect(to, HOST, resolve));
  let client: dgram.RemoteInfo | null = null;
  let extra = 0;
  front.on('message', (msg, rinfo) => {
    client = rinfo;
    upstream.send(msg);
  });
  upstream.on('message', (msg) => {
    if (client === null) return;
    const pass = backward(msg);
    extra += pass.length - 1;
    for (const d of pass) front.send(d, client.port, client.address);
  });
  front.on('error', () => {});
  upstream.on('error', () => {});
  return { port: front.address().port, replayed: () => extra };
}

describe('a flood of duplicate ACKs', () => {
  it('LossRecovery (fake clock): the same ACK 1000 times acknowledges, loses and samples nothing more than once', () => {
    const r = new LossRecovery<number>();
    // Twenty packets at t=0; 0-9 and 13-14 arrive, 10-12 do not (12 is 2 below the largest: not
    // lost by count, and 10 ms is within 9/8 of the RTT: not lost by time either).
    for (let pn = 0; pn < 20; pn++) r.onSent(newSentPacket(pn, 0, 1200, pn));
    const ack: AckBody = { largest: 14, ackDelayMicros: 0, maxData: 0, ranges: [{ start: 13, end: 14 }, { start: 0, end: 9 }] };
    const first = r.onAck(ack, 10);
    expect(first.acked.map((p) => p.pn)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14]);
    expect(first.lost.map((p) => p.pn)).toEqual([10, 11]);
    const srtt = r.rtt.smoothed;
    const inFlight = r.bytesInFlight;
    for (let i = 0; i < 1000; i++) {
      const again = r.onAck(ack, 10 + i / 1000);
      expect(again.acked).toEqual([]);
      expect(again.lost).toEqual([]);
      expect(again.spurious).toEqual([]);
    }
    expect(r.declaredLost).toBe(2);
    expect(r.spurious).toBe(0);
    expect(r.rtt.smoothed).toBe(srtt);
    expect(r.bytesInFlight).toBe(inFlight);
    expect(r.ptoCount).toBe(0);
  });

  it('against a real UDP sender: 6,000 replayed ACKs (fresh and stale) leave its retransmissions where a run without them is, and the file arrives byte for byte', async () => {
    await start();
    const SIZE = 8 * 1024 * 1024;
    const content = seededBytes(SIZE, 4242);
    const file = path.join(base.path, 'acked.bin');
    await fsp.writeFile(file, content);
    const run = async (name: string, backward: (d: Buffer) => Buffer[]) => {
      const fwd = await startForwarder(port, backward);
      const copy = path.join(base.path, name);
      await fsp.copyFile(file, copy);
      const result = await sendFile({ file: copy, target: { host: HOST, port: fwd.port }, hash: 'xxh128', chunkSize: 1024 * 1024, timeoutMs: 10_000, transport: 'udp', udp: DEFAULT_UDP_OPTIONS });
      expect(result).toMatchObject({ name, committed: 1, failed: 0, transport: 'udp' });
      expect((await fsp.readFile(path.join(out, name))).equals(content), `${name} arrived byte for byte`).toBe(true);
      return { stats: result.stats!, replayed: fwd.replayed() };
    };

    const baseline = await run('plain.bin', (d) => [d]);
    let acks = 0;
    let stale: Buffer | null = null;
    const flooded = await run('flooded.bin', (d) => {
      const p = decodePacket(d);
      if (!p.ok || p.packet.body.type !== 'ack') return [d];
      acks++;
      if (acks === 3) stale = d;
      // Five ACKs each passed on 1000 times as they come; then an old one, 1000 times, late.
      if (acks === 5 || acks === 15 || acks === 30 || acks === 45 || acks === 60) return Array<Buffer>(1000).fill(d);
      if (acks === 75 && stale) return [d, ...Array<Buffer>(1000).fill(stale)];
      return [d];
    });
    expect(acks, 'ACKs the receiver sent during the flooded run').toBeGreaterThanOrEqual(75);
    expect(flooded.replayed).toBe(5 * 999 + 1000);
    // The sender did read the flood (its packet count includes every copy)...
    expect(flooded.stats.packetsReceived!).toBeGreaterThan(baseline.stats.packetsReceived! + 5000);
    // ...and sent again no more than a run without it: a duplicate ACK acknowledges nothing new and declares nothing lost.
    expect(flooded.stats.retransmitted!).toBeLessThanOrEqual(baseline.stats.retransmitted! + 16);
    expect(flooded.stats.lost!).toBeLessThanOrEqual(baseline.stats.lost! + 16);
    expect(flooded.stats.spurious!).toBeLessThanOrEqual(baseline.stats.spurious! + 16);
    expect(events.failed.length).toBe(0);
  });
});
