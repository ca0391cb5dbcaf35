/**
 * The TCP transport over real sockets on 127.0.0.1 (port 0): frames arrive whole and in order,
 * backpressure holds the sender until the peer reads, and every way a connection can fail
 * surfaces as the right SockxferError code. Waits on events and promises, never on sleeps.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SockxferError, type ErrorCode } from '../../src/errors.js';
import { HEADER_SIZE, StreamDeframer, WHOLE_TRANSFER, encodeFrameToBuffer, type Frame } from '../../src/protocol/index.js';
import { connectTcp, listenTcp, type TcpListener } from '../../src/transport/tcp.js';
import type { Transport } from '../../src/transport/transport.js';
import { seededBytes } from '../helpers/seeded.js';

const SESSION = 0x1122334455667788n;
const MIB = 1024 * 1024;

/**
 * The SockxferError `p` rejects with, checked against `code`. Call it as soon as the promise
 * exists (and await it later), so an early rejection is never "unhandled".
 */
async function rejection(p: Promise<unknown>, code: ErrorCode): Promise<SockxferError> {
  const err = await p.then(
    () => expect.fail(`expected a rejection with ${code}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SockxferError);
  expect((err as SockxferError).code).toBe(code);
  return err as SockxferError;
}

/** A DATA frame's bytes in one buffer, whether they came as one piece or several. */
function bytesOf(data: Buffer | Buffer[]): Buffer {
  return Array.isArray(data) ? Buffer.concat(data) : data;
}

/** Compares frames; DATA bytes with Buffer.equals so a 4 MiB mismatch does not flood the output. */
function expectFrame(actual: Frame, expected: Frame): void {
  if (expected.type === 'data' && actual.type === 'data') {
    const { data: a, ...af } = actual;
    const { data: e, ...ef } = expected;
    expect(af).toEqual(ef);
    const ab = bytesOf(a);
    const eb = bytesOf(e);
    expect(ab.length).toBe(eb.length);
    expect(ab.equals(eb)).toBe(true);
  } else {
    expect(actual).toEqual(expected);
  }
}

// Everything a test opens, closed in afterEach.
const listeners: TcpListener[] = [];
const transports: Transport[] = [];
const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const t of transports.splice(0)) t.destroy();
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(listeners.splice(0).map((l) => l.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

/** A listenTcp on 127.0.0.1:0 whose accepted transports come out of `accepted()` in order. */
async function listen(): Promise<{ port: number; accepted: () => Promise<Transport> }> {
  const queue: Transport[] = [];
  const waiting: Array<(t: Transport) => void> = [];
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, (t) => {
    transports.push(t);
    const w = waiting.shift();
    if (w) w(t);
    else queue.push(t);
  });
  listeners.push(listener);
  expect(listener.host).toBe('127.0.0.1');
  expect(listener.port).toBeGreaterThan(0);
  return {
    port: listener.port,
    accepted: () => {
      const t = queue.shift();
      return t ? Promise.resolve(t) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

async function connect(port: number, session = SESSION): Promise<Transport> {
  const t = await connectTcp({ host: '127.0.0.1', port }, { timeoutMs: 5000, session });
  transports.push(t);
  return t;
}

/** A connected pair: client from connectTcp, server from listenTcp. */
async function pair(): Promise<{ client: Transport; server: Transport }> {
  const { port, accepted } = await listen();
  const client = await connect(port);
  return { client, server: await accepted() };
}

/** A plain net socket to `port`, connected. */
async function rawConnect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

describe('TCP transport', () => {
  it('delivers frames decoded and in order, a 4 MiB DATA frame included, both ways', async () => {
    const { client, server } = await pair();
    expect(client.kind).toBe('tcp');
    expect(client.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(server.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    const big = seededBytes(4 * MIB, 1);
    const frames: Frame[] = [
      { type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'test/1' },
      {
        type: 'offer',
        chunkSize: 4 * MIB,
        hash: 'sha256',
        fileCount: 1,
        totalBytes: big.length + 3,
        more: false,
        entries: [{ index: 0, kind: 'file', name: 'résumé 📄.pdf', size: big.length + 3, mode: 0o644, mtimeMs: 1_700_000_000_000 }],
      },
      { type: 'data', index: 0, chunk: 0, data: [big] },
      { type: 'data', index: 0, chunk: 1, data: [Buffer.from('end')] },
      { type: 'data', index: 0, chunk: 2, data: [] },
      { type: 'end', index: 0, size: big.length + 3, hash: 'sha256', digest: seededBytes(32, 2), abandoned: false },
      { type: 'end', index: 1, size: 0, hash: 'sha256', digest: Buffer.alloc(0), abandoned: true },
      { type: 'error', code: 13000, message: 'bye' },
    ];
    for (const f of frames) client.send(f);
    for (const f of frames) expectFrame(await server.receive(), f);
    // The server learnt the session from the first frame and answers with it.
    expect(server.session).toBe(SESSION);
    const welcome: Frame = { type: 'welcome', version: 2, capabilities: 0, software: 'test/2' };
    const accept: Frame = {
      type: 'accept',
      more: true,
      entries: [
        { index: 0, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [[0, 1]] },
        { index: 1, action: 'refuse', code: 602, message: 'bad name', digest: Buffer.alloc(0), have: [] },
      ],
    };
    const verdict: Frame = { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'sha256', digest: seededBytes(32, 2), message: '', path: 'résumé 📄 (1).pdf' };
    const refuse: Frame = { type: 'refuse', code: 602, index: WHOLE_TRANSFER, message: 'no' };
    for (const f of [welcome, accept, verdict, refuse]) server.send(f);
    for (const f of [welcome, accept, verdict, refuse]) expectFrame(await client.receive(), f);
  });

  it('queues frames that arrive before receive() is called, and serves waiting receive() calls first', async () => {
    const { client, server } = await pair();
    const early = [server.receive(), server.receive()];
    for (let i = 0; i < 5; i++) client.send({ type: 'data', index: 0, chunk: i, data: [Buffer.from([i])] });
    const got = await Promise.all([...early, server.receive(), server.receive(), server.receive()]);
    expect(got.map((f) => (f.type === 'data' ? f.chunk : -1))).toEqual([0, 1, 2, 3, 4]);
  });

  it('backpressure: send() says false over the high-water mark, drain() waits until the peer reads', async () => {
    // The peer is a plain socket that does not read at first, so the kernel buffers fill up.
    let peer: net.Socket | null = null;
    const peerConnected = new Promise<net.Socket>((resolve) => {
      const server = net.createServer({ pauseOnConnect: true }, (s) => {
        sockets.push(s);
        s.on('error', () => {});
        peer = s;
        resolve(s);
      });
      servers.push(server);
      server.listen({ host: '127.0.0.1', port: 0 });
    });
    await new Promise<void>((resolve) => servers[0]!.once('listening', () => resolve()));
    const port = (servers[0]!.address() as net.AddressInfo).port;
    const client = await connect(port);
    const s = await peerConnected;
    expect(peer).toBe(s);

    const chunks = Array.from({ length: 6 }, (_, i) => seededBytes(4 * MIB, 10 + i));
    const results = chunks.map((data, chunk) => client.send({ type: 'data', index: 0, chunk, data: [data] }));
    // 4 MiB is below the 8 MiB mark; from the second 4 MiB frame on, send() asks to wait.
    expect(results).toEqual([true, false, false, false, false, false]);

    let drained = false;
    const drain = client.drain().then(() => {
      drained = true;
    });
    // 24 MiB cannot fit in the kernel buffers of a peer that does not read.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(drained).toBe(false);

    // Now the peer reads; every frame arrives intact and drain() resolves.
    const deframer = new StreamDeframer();
    const received: Frame[] = [];
    const allIn = new Promise<void>((resolve, reject) => {
      s.on('data', (chunk: Buffer) => {
        try {
          for (const d of deframer.push(chunk)) received.push(d.frame);
        } catch (err) {
          reject(err);
        }
        if (received.length === chunks.length) resolve();
      });
    });
    s.resume();
    await drain;
    expect(drained).toBe(true);
    await allIn;
    received.forEach((f, i) => expectFrame(f, { type: 'data', index: 0, chunk: i, data: [chunks[i]!] }));
    // Below the low-water mark again: drain() resolves at once.
    await client.drain();
  });

  it('receive() rejects with E_CONNECTION_LOST when the peer closes', async () => {
    const { client, server } = await pair();
    const lost = rejection(server.receive(), 'E_CONNECTION_LOST');
    await client.close();
    const err = await lost;
    expect(err.message).toMatch(/closed the connection/);
    // And so does every later call.
    await rejection(server.receive(), 'E_CONNECTION_LOST');
  });

  it('frames sent before the peer closed are still delivered, then E_CONNECTION_LOST', async () => {
    const { client, server } = await pair();
    client.send({ type: 'error', code: 900, message: 'last words' });
    await client.close();
    expect(await server.receive()).toEqual({ type: 'error', code: 900, message: 'last words' });
    await rejection(server.receive(), 'E_CONNECTION_LOST');
  });

  it('a peer that closes in the middle of a frame: E_CONNECTION_LOST, saying so', async () => {
    const { port, accepted } = await listen();
    const raw = await rawConnect(port);
    const frame = encodeFrameToBuffer({ type: 'data', index: 0, chunk: 0, data: [Buffer.alloc(1000, 1)] }, SESSION);
    raw.end(frame.subarray(0, 500));
    const server = await accepted();
    const err = await rejection(server.receive(), 'E_CONNECTION_LOST');
    expect(err.message).toMatch(/in the middle of a frame/);
  });

  it('idle timeout: receive() rejects with E_TIMEOUT', async () => {
    const { server } = await pair();
    server.setIdleTimeout(200);
    const started = performance.now();
    await rejection(server.receive(), 'E_TIMEOUT');
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });

  it('connecting to a closed port fails with E_CONNECT_REFUSED', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const err = await rejection(connectTcp({ host: '127.0.0.1', port }, { timeoutMs: 5000, session: SESSION }), 'E_CONNECT_REFUSED');
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  it('listening on a port in use fails with E_LISTEN', async () => {
    const { port } = await listen();
    const err = await rejection(
      listenTcp({ host: '127.0.0.1', port }, () => {}),
      'E_LISTEN',
    );
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  it('a frame with a flipped byte: receive() rejects with E_CHECKSUM, after the good frame before it', async () => {
    const { port, accepted } = await listen();
    const raw = await rawConnect(port);
    const good = encodeFrameToBuffer({ type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'raw' }, SESSION);
    const bad = encodeFrameToBuffer({ type: 'data', index: 0, chunk: 3, data: [seededBytes(2000, 5)] }, SESSION);
    bad[HEADER_SIZE + 12 + 777]! ^= 0x01;
    raw.write(good);
    const server = await accepted();
    expect((await server.receive()).type).toBe('hello');
    raw.write(bad);
    const err = await rejection(server.receive(), 'E_CHECKSUM');
    expect(err.message).toMatch(/data frame failed its CRC32C check/);
  });

  it('a frame of another session on the connection: E_PROTOCOL', async () => {
    const { port, accepted } = await listen();
    const raw = await rawConnect(port);
    raw.write(encodeFrameToBuffer({ type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'raw' }, SESSION));
    raw.write(encodeFrameToBuffer({ type: 'error', code: 900, message: 'x' }, SESSION + 1n));
    const server = await accepted();
    expect((await server.receive()).type).toBe('hello');
    const err = await rejection(server.receive(), 'E_PROTOCOL');
    expect(err.message).toMatch(/session/);
  });

  it("abort(err) sends an ERROR frame with err's wire code, and fails local calls with err", async () => {
    const { client, server } = await pair();
    // The usual case: the server side has seen a frame, so it knows the session.
    client.send({ type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'test' });
    expect((await server.receive()).type).toBe('hello');
    const pending = server.receive().catch((e: unknown) => e);
    const reason = new SockxferError('E_HASH_MISMATCH', 'digests differ');
    const aborted = server.abort(reason);
    expect(await client.receive()).toEqual({ type: 'error', code: 501, message: 'digests differ' });
    await rejection(client.receive(), 'E_CONNECTION_LOST');
    expect(await pending).toBe(reason);
    await aborted;
    expect(await server.receive().catch((e: unknown) => e)).toBe(reason);
    expect(() => server.send({ type: 'error', code: 100, message: 'too late' })).toThrow(SockxferError);
  });

  // A receiver that fails before the first frame does not know the session yet: its ERROR carries
  // session 0, which the sender must still accept.
  it('abort(err) before the first frame arrived still reaches the peer as an ERROR frame', async () => {
    const { client, server } = await pair();
    const aborted = server.abort(new SockxferError('E_TIMEOUT', 'no HELLO in time'));
    expect(await client.receive()).toEqual({ type: 'error', code: 400, message: 'no HELLO in time' });
    await aborted;
  });

  it('abort with E_INTERRUPTED carries wire code 13000', async () => {
    const { client, server } = await pair();
    const aborted = client.abort(new SockxferError('E_INTERRUPTED', 'stopped'));
    expect(await server.receive()).toEqual({ type: 'error', code: 13000, message: 'stopped' });
    await aborted;
  });

  it('destroy() fails pending calls at once and the peer sees the connection lost', async () => {
    const { client, server } = await pair();
    const pending = rejection(client.receive(), 'E_CONNECTION_LOST');
    client.destroy();
    await pending;
    await rejection(server.receive(), 'E_CONNECTION_LOST');
  });
});
