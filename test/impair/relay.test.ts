/**
 * The impairing relay over real sockets on 127.0.0.1 (port 0), in front of a UDP echo server:
 * datagrams pass byte-identical, seeded loss drops the same datagrams every run (the ones the
 * model predicts), delay holds echoes back, the filter hook drops what it says, and close()
 * leaves no socket or timer behind. Waits are on counters and messages with a deadline, never
 * fixed sleeps.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Impairment } from '../../src/impair/model.js';
import { startRelay, type Relay, type RelayOptions } from '../../src/impair/relay.js';
import { seededBytes } from '../helpers/seeded.js';

/** Polls `cond` every 2 ms until it holds; fails after `ms` with `what` and the last state. */
function until(cond: () => boolean, what: () => string, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (cond()) return resolve();
      if (performance.now() > deadline) return reject(new Error(`timed out after ${ms} ms waiting for ${what()}`));
      setTimeout(check, 2);
    };
    check();
  });
}

function bind(socket: dgram.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve(socket.address().port);
    });
  });
}

function close(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

/** A datagram carrying `seq` in its first 4 bytes, then `size - 4` seeded bytes. */
function datagram(seq: number, size = 32): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(seq, 0);
  seededBytes(size - 4, seq).copy(b, 4);
  return b;
}

/** A client socket that collects what comes back, by sequence number. */
interface Client {
  socket: dgram.Socket;
  received: Map<number, Buffer>;
  arrivals: Array<{ seq: number; at: number }>;
  send: (data: Buffer) => void;
}

let echo: dgram.Socket;
let echoPort: number;
const opened: dgram.Socket[] = [];
const relays: Relay[] = [];

beforeEach(async () => {
  echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
  echoPort = await bind(echo);
});

afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.close()));
  await Promise.all(opened.splice(0).map(close));
  await close(echo);
});

async function relay(options: Partial<RelayOptions> = {}): Promise<Relay> {
  const r = await startRelay({ target: { host: '127.0.0.1', port: echoPort }, seed: 1, ...options });
  relays.push(r);
  return r;
}

async function client(r: Relay): Promise<Client> {
  const socket = dgram.createSocket('udp4');
  opened.push(socket);
  await bind(socket);
  const received = new Map<number, Buffer>();
  const arrivals: Client['arrivals'] = [];
  socket.on('message', (msg) => {
    const seq = msg.readUInt32BE(0);
    received.set(seq, msg);
    arrivals.push({ seq, at: performance.now() });
  });
  return { socket, received, arrivals, send: (data) => socket.send(data, r.port, r.host) };
}

/** Sequence numbers 0..n-1 that did not come back. */
function missing(c: Client, n: number): number[] {
  return Array.from({ length: n }, (_, i) => i).filter((i) => !c.received.has(i));
}

/**
 * Sends n small datagrams at once and waits until the relay has taken in all of them and the
 * client has every echo the relay sent back (the echo path itself is not impaired).
 */
async function exchange(r: Relay, c: Client, n: number): Promise<void> {
  for (let i = 0; i < n; i++) c.send(datagram(i));
  await until(
    () => {
      const s = r.stats();
      return s.forward.received === n && s.backward.received === s.forward.delivered && c.received.size === s.backward.delivered;
    },
    () => `all ${n} datagrams processed: ${JSON.stringify(r.stats())}, client has ${c.received.size}`,
  );
}

describe('impairing relay', () => {
  it('passes datagrams byte-identical when nothing is impaired', async () => {
    const r = await relay();
    expect(r.host).toBe('127.0.0.1');
    expect(r.port).toBeGreaterThan(0);
    const c = await client(r);
    const sizes = [4, 5, 100, 1200, 1472, 9000, 65_000];
    const sent = sizes.map((size, seq) => datagram(seq, size));
    for (const d of sent) c.send(d);
    await until(
      () => c.received.size === sent.length,
      () => `${sent.length} echoes, have ${c.received.size}`,
    );
    for (const [seq, d] of sent.entries()) expect(c.received.get(seq)!.equals(d)).toBe(true);
    const s = r.stats();
    expect(s.clients).toBe(1);
    for (const dir of [s.forward, s.backward]) {
      expect(dir.received).toBe(sent.length);
      expect(dir.sent).toBe(sent.length);
      expect(dir.sendErrors).toBe(0);
      expect(dir.bytesIn).toBe(sizes.reduce((a, b) => a + b, 0));
    }
  });

  it('drops the same datagrams in every run with the same seed, as the model predicts', async () => {
    const n = 500;
    const forward = { loss: 0.1 };
    const runOnce = async (seed: number) => {
      const r = await relay({ forward, seed });
      const c = await client(r);
      await exchange(r, c, n);
      expect(r.stats().forward.droppedLoss).toBe(n - c.received.size);
      return missing(c, n);
    };
    const first = await runOnce(77);
    const second = await runOnce(77);
    expect(second).toEqual(first);
    expect(first.length).toBeGreaterThan(20);
    expect(first.length).toBeLessThan(90);
    // Loss decisions do not depend on time, so the model alone predicts them.
    const model = new Impairment(forward, 77);
    const predicted = Array.from({ length: n }, (_, i) => i).filter((i) => model.admit(datagram(i), 0).length === 0);
    expect(first).toEqual(predicted);
    expect(await runOnce(78)).not.toEqual(first);
  });

  it('applies delay in both directions', async () => {
    const delayMs = 30;
    const r = await relay({ forward: { delayMs }, backward: { delayMs } });
    const c = await client(r);
    for (let seq = 0; seq < 3; seq++) {
      const t0 = performance.now();
      c.send(datagram(seq));
      await until(
        () => c.received.has(seq),
        () => `echo ${seq}`,
      );
      const rtt = c.arrivals.find((a) => a.seq === seq)!.at - t0;
      expect(rtt).toBeGreaterThanOrEqual(2 * delayMs);
    }
  });

  it('drops what the filter hook rejects, in either direction', async () => {
    const n = 300;
    const calls = { forward: 0, backward: 0 };
    const r = await relay({
      filter: (direction, d, now) => {
        expect(typeof now).toBe('number');
        calls[direction]++;
        const seq = d.readUInt32BE(0);
        return direction === 'forward' ? seq % 3 !== 0 : seq % 5 !== 0;
      },
    });
    const c = await client(r);
    for (let i = 0; i < n; i++) c.send(datagram(i));
    await until(
      () => {
        const s = r.stats();
        return (
          s.forward.received + s.forward.droppedFilter === n &&
          s.backward.received + s.backward.droppedFilter === s.forward.delivered &&
          c.received.size === s.backward.delivered
        );
      },
      () => `filtered exchange: ${JSON.stringify(r.stats())}`,
    );
    const expected = Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 !== 0 && i % 5 !== 0);
    expect([...c.received.keys()].sort((a, b) => a - b)).toEqual(expected);
    const s = r.stats();
    expect(s.forward.droppedFilter).toBe(n / 3);
    expect(s.backward.droppedFilter).toBe(n / 5 - n / 15); // multiples of 5 that passed forward
    expect(calls).toEqual({ forward: n, backward: n - n / 3 });
  });

  it('keeps clients apart: each gets its own replies', async () => {
    const r = await relay();
    const a = await client(r);
    const b = await client(r);
    for (let i = 0; i < 20; i++) (i % 2 === 0 ? a : b).send(datagram(i));
    await until(
      () => a.received.size + b.received.size === 20,
      () => `20 echoes, have ${a.received.size} + ${b.received.size}`,
    );
    expect([...a.received.keys()].every((seq) => seq % 2 === 0)).toBe(true);
    expect([...b.received.keys()].every((seq) => seq % 2 === 1)).toBe(true);
    expect(r.stats().clients).toBe(2);
  });

  it('counts send errors when the target is gone, without throwing', async () => {
    const r = await relay();
    const c = await client(r);
    await close(echo);
    echo = dgram.createSocket('udp4'); // for afterEach to close; nothing listens on echoPort now
    for (let i = 0; i < 5; i++) {
      c.send(datagram(i));
      await until(
        () => r.stats().forward.sent + r.stats().forward.sendErrors > i,
        () => `send ${i}: ${JSON.stringify(r.stats().forward)}`,
      );
    }
    await until(
      () => r.stats().forward.sendErrors > 0,
      () => `a send error: ${JSON.stringify(r.stats().forward)}`,
    );
    expect(c.received.size).toBe(0);
  });

  it('close() releases every socket and timer, with deliveries still scheduled', async () => {
    const handles = (type: string) => process.getActiveResourcesInfo().filter((t) => t === type).length;
    // A closed socket's handle is released in the close phase of the loop turn after its
    // 'close' event: two setImmediates are past it.
    const turn = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
    await turn();
    const sockets = handles('UDPWrap');
    const timers = handles('Timeout');
    const r = await startRelay({ target: { host: '127.0.0.1', port: echoPort }, seed: 1, forward: { delayMs: 10_000 } });
    const c = await client(r);
    for (let i = 0; i < 10; i++) c.send(datagram(i));
    await until(
      () => r.stats().forward.received === 10,
      () => `10 datagrams in: ${JSON.stringify(r.stats().forward)}`,
    );
    expect(handles('UDPWrap')).toBe(sockets + 3); // client, relay listener, one upstream
    await r.close();
    await r.close(); // idempotent
    await turn();
    expect(handles('UDPWrap')).toBe(sockets + 1); // the client only
    expect(handles('Timeout')).toBe(timers);
    expect(r.stats().forward.sent).toBe(0);
  });

  it('listens on ::1 with an IPv6 socket', async () => {
    const r = await relay({ host: '::1' });
    expect(r.host).toBe('::1');
    const socket = dgram.createSocket('udp6');
    opened.push(socket);
    await new Promise<void>((resolve) => socket.bind(0, '::1', () => resolve()));
    const got = new Promise<Buffer>((resolve) => socket.once('message', resolve));
    socket.send(datagram(9), r.port, '::1');
    let timer: NodeJS.Timeout | undefined;
    const echoed = await Promise.race([got, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 5000)))]);
    clearTimeout(timer);
    expect(echoed?.equals(datagram(9))).toBe(true);
  });
});
