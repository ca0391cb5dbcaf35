/**
 * End-to-end failures through the built CLI: each one exits with its documented status, ends
 * stdout with an `error` event carrying the documented code, and leaves no file under the final
 * name: a transfer refused leaves no temporary file, one cut short mid-file leaves only its resume
 * data (`.sockxfer-partial/<key>.part` + `<key>.journal`). Fake peers made with node:net play the receiver or the sender where
 * the real CLI cannot be made to misbehave.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';
import { TRAILER_SIZE, crc32c, decodeFrame, encodeFrameToBuffer, type Frame } from '../../src/protocol/index.js';
import { startupEvent,
  closedPort,
  listDir,
  randomFile,
  send,
  sha256File,
  sockxfer,
  sparseFile,
  startReceiver,
  useWorkspace,
  exitWithin,
} from '../helpers/cli.js';
import { expectInProgress, expectKeptForResume } from '../helpers/partial.js';
import { PARTIAL } from '../helpers/tree.js';

const ws = useWorkspace();
const fakes: Array<{ server?: net.Server; sockets: Set<net.Socket> }> = [];

afterEach(async () => {
  for (const fake of fakes.splice(0)) {
    for (const s of fake.sockets) s.destroy();
    await new Promise<void>((resolve) => (fake.server ? fake.server.close(() => resolve()) : resolve()));
  }
});

/** Reads whole frames off a socket, as a fake peer; `session()` is the session id of the latest frame. */
function frameReader(socket: net.Socket): { next: () => Promise<Frame>; session: () => bigint } {
  let buffered = Buffer.alloc(0);
  let session = 0n;
  const frames: Frame[] = [];
  const waiting: Array<{ resolve: (f: Frame) => void; reject: (e: Error) => void }> = [];
  let ended: Error | null = null;
  socket.on('data', (data: Buffer) => {
    buffered = Buffer.concat([buffered, data]);
    for (let decoded = decodeFrame(buffered); decoded; decoded = decodeFrame(buffered)) {
      buffered = buffered.subarray(decoded.size);
      session = decoded.session;
      const w = waiting.shift();
      if (w) w.resolve(decoded.frame);
      else frames.push(decoded.frame);
    }
  });
  socket.on('close', () => {
    ended = new Error('the connection closed before the awaited frame');
    for (const w of waiting.splice(0)) w.reject(ended);
  });
  return {
    next: () => {
      const f = frames.shift();
      if (f) return Promise.resolve(f);
      if (ended) return Promise.reject(ended);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    session: () => session,
  };
}

/** A fake receiver on 127.0.0.1, port 0; `onConnection` plays the protocol (or does not). */
async function fakeReceiver(onConnection: (socket: net.Socket) => void): Promise<number> {
  const fake = { server: undefined as net.Server | undefined, sockets: new Set<net.Socket>() };
  fake.server = net.createServer((socket) => {
    fake.sockets.add(socket);
    socket.on('close', () => fake.sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  fakes.push(fake);
  await new Promise<void>((resolve, reject) => fake.server!.once('error', reject).listen(0, '127.0.0.1', resolve));
  return (fake.server.address() as net.AddressInfo).port;
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(
    () => true,
    () => false,
  );
}

describe('exit statuses and error events', () => {
  it('a closed port: exit 3, E_CONNECT_REFUSED', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 1000);
    const port = await closedPort();
    const r = await send(file, `127.0.0.1:${port}`);
    expect(r.code, r.stderr).toBe(3);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_CONNECT_REFUSED', exitCode: 3 });
    expect(r.events.filter((e) => e.event !== 'error')).toEqual([]);
    expect(r.stderr).toContain('[E_CONNECT_REFUSED, exit 3]');
  });

  it('an existing target: exit 6, E_EXISTS, the old file untouched and no temporary file', async () => {
    const target = path.join(ws.out, 'taken.bin');
    const oldSha = await randomFile(target, 40_000);
    const file = path.join(ws.src, 'taken.bin');
    await randomFile(file, 50_000);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const r = await send(file, address);
    expect(r.code, r.stderr).toBe(6);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_EXISTS', exitCode: 6 });
    // A --once receiver exits with the status of the transfer it served.
    expect(await receiver.exited).toBe(6);
    expect(receiver.events.at(-1)).toMatchObject({ event: 'error', code: 'E_EXISTS', exitCode: 6 });
    expect(await sha256File(target)).toBe(oldSha);
    expect(await listDir(ws.out)).toEqual(['taken.bin']);
  });

  it('a missing source file: exit 8, E_NOT_FOUND, nothing reaches the receiver', async () => {
    const { proc: receiver, address } = await startReceiver(ws.out);
    const r = await send(path.join(ws.src, 'no-such-file.bin'), address);
    expect(r.code, r.stderr).toBe(8);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_NOT_FOUND', exitCode: 8 });
    expect(receiver.events.filter((e) => !startupEvent(e))).toEqual([]);
    expect(await listDir(ws.out)).toEqual([]);
  });

  it('an unreadable source file: exit 8, E_PERMISSION', async () => {
    const file = path.join(ws.src, 'secret.bin');
    await randomFile(file, 1000);
    await fs.chmod(file, 0o000);
    // chmod 000 does not stop root from reading, so as root the sender runs as nobody (65534),
    // which needs to get through the (0700) temporary folder to meet the file's own permissions.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      await fs.chmod(ws.root, 0o755);
      await fs.chmod(ws.src, 0o755);
    }
    const port = await closedPort();
    const proc = sockxfer(['send', file, `127.0.0.1:${port}`, '--json'], asRoot ? { uid: 65534, gid: 65534 } : {});
    expect(await proc.exited, proc.stderr()).toBe(8);
    expect(proc.events.at(-1)).toMatchObject({ event: 'error', code: 'E_PERMISSION', exitCode: 8 });
  });
});

describe('usage errors: exit 2', () => {
  const cases: Array<{ title: string; args: (file: string, out: string) => string[]; stderr: RegExp; notStderr?: RegExp }> = [
    { title: 'no arguments', args: () => [], stderr: /Usage: sockxfer/ },
    { title: 'an unknown command', args: () => ['frobnicate'], stderr: /unknown command 'frobnicate'/ },
    { title: '`send` with one argument', args: (file) => ['send', file, '--json'], stderr: /missing host:port/ },
    { title: '--chunk-size 1', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--chunk-size', '1'], stderr: /--chunk-size/ },
    { title: '--hash md5', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--hash', 'md5'], stderr: /md5/ },
    { title: 'receive without --port', args: (_file, out) => ['receive', '--dir', out, '--json'], stderr: /--port/ },
    { title: '--datagram-size 100', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--udp', '--datagram-size', '100'], stderr: /--datagram-size/ },
    { title: '--rate 1', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--udp', '--rate', '1'], stderr: /--rate/ },
    { title: '--cc cubic', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--udp', '--cc', 'cubic'], stderr: /cubic/ },
    // --rate applies over TCP too: it is not among the UDP-only options named (see the TCP --rate test below).
    { title: 'UDP options without --udp', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--rate', '10M', '--datagram-size', '1200', '--cc', 'reno'], stderr: /^error: --datagram-size, --cc only apply with --udp$/m, notStderr: /--rate/ },
    { title: '--cc without --udp', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--cc', 'reno'], stderr: /^error: --cc only applies with --udp$/m },
    { title: '--datagram-size without --udp', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--datagram-size', '1200'], stderr: /^error: --datagram-size only applies with --udp$/m },
    // Over TCP the rate is still checked.
    { title: '--rate 1 without --udp', args: (file) => ['send', file, '127.0.0.1:9', '--json', '--rate', '1'], stderr: /--rate/ },
    { title: 'receive --transport sctp', args: (_file, out) => ['receive', '--port', '0', '--dir', out, '--json', '--transport', 'sctp'], stderr: /sctp/ },
  ];
  for (const c of cases) {
    it(c.title, async () => {
      const file = path.join(ws.src, 'a.bin');
      await randomFile(file, 10);
      const proc = sockxfer(c.args(file, ws.out));
      expect(await proc.exited, proc.stderr()).toBe(2);
      expect(proc.stderr()).toMatch(c.stderr);
      if (c.notStderr) expect(proc.stderr()).not.toMatch(c.notStderr);
      expect(proc.stray).toEqual([]);
      // With --json, a parse error is still reported as the last (and only) event.
      const args = c.args(file, ws.out);
      expect(proc.events).toEqual(args.includes('--json') ? [expect.objectContaining({ event: 'error', code: 'E_USAGE', exitCode: 2 })] : []);
    });
  }

  it('--rate 8M without --udp is accepted (it applies over TCP): past the parser, a closed port gives exit 3, E_CONNECT_REFUSED', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10);
    const port = await closedPort();
    const r = await send(file, `127.0.0.1:${port}`, ['--rate', '8M']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.events).toMatchObject([{ event: 'error', code: 'E_CONNECT_REFUSED', exitCode: 3 }]);
    expect(r.stderr).not.toMatch(/only appl(y|ies) with --udp/);
  });

  for (const target of ['nohost', 'h:99999']) {
    it(`the bad target "${target}", with an E_USAGE error event`, async () => {
      const file = path.join(ws.src, 'a.bin');
      await randomFile(file, 10);
      const proc = sockxfer(['send', file, target, '--json']);
      expect(await proc.exited, proc.stderr()).toBe(2);
      expect(proc.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
      expect(proc.events[0]!.message).toContain(target === 'nohost' ? '"nohost" is not HOST:PORT' : 'port 99999 is out of range');
      expect(proc.stray).toEqual([]);
    });
  }
});

describe('--json', () => {
  it('stdout holds JSON events only, on both sides, for a success and a failure', async () => {
    const file = path.join(ws.src, 'j.bin');
    await randomFile(file, 3 * 1024 * 1024);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sender = sockxfer(['send', file, address, '--json']);
    expect(await sender.exited, sender.stderr()).toBe(0);
    expect(await receiver.exited, receiver.stderr()).toBe(0);
    // The second send fails (the file now exists, and the --once receiver is gone).
    const failed = sockxfer(['send', file, address, '--json']);
    expect(await failed.exited).toBe(3);
    for (const p of [sender, receiver, failed]) {
      expect(p.stray).toEqual([]);
      expect(p.events.length).toBeGreaterThan(0);
      for (const e of p.events) expect(['listening', 'warning', 'start', 'progress', 'file', 'done', 'error']).toContain(e.event);
    }
    expect(sender.events.map((e) => e.event)).toEqual(['start', ...sender.events.slice(1, -2).map(() => 'progress'), 'file', 'done']);
    // One `listening` event per transport (TCP and UDP share the port), then the transfer.
    expect(receiver.events.slice(0, 2)).toMatchObject([{ event: 'listening', transport: 'tcp' }, { event: 'listening', transport: 'udp' }]);
    // Without a key: a warning that transfers are not encrypted.
    expect(receiver.events.map((e) => e.event)).toEqual(['listening', 'listening', 'warning', 'start', ...receiver.events.slice(4, -2).map(() => 'progress'), 'file', 'done']);
    expect(receiver.events[2]).toMatchObject({ event: 'warning', encrypted: false });
    expect(failed.events).toMatchObject([{ event: 'error', code: 'E_CONNECT_REFUSED', exitCode: 3 }]);
    // The human summary went to stderr, not stdout.
    expect(sender.stderr()).toMatch(/^sent j\.bin /m);
  });
});

describe('a peer that dies mid-transfer', () => {
  it('receiver killed (SIGKILL): the sender exits 3, E_CONNECTION_LOST, and nothing is under the final name', async () => {
    const file = path.join(ws.src, 'big.bin');
    await sparseFile(file, 2 * 1024 ** 3);
    const { proc: receiver, address } = await startReceiver(ws.out);
    const sender = sockxfer(['send', file, address, '--json']);
    await receiver.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0);
    receiver.child.kill('SIGKILL');
    expect(await sender.exited, sender.stderr()).toBe(3);
    expect(sender.events.at(-1)).toMatchObject({ event: 'error', code: 'E_CONNECTION_LOST', exitCode: 3 });
    expect(await receiver.exited).toBe(128 + 9);
    // A SIGKILLed receiver cannot tidy up; the final name must still be empty, and any partial data is inside .sockxfer-partial.
    expect(await exists(path.join(ws.out, 'big.bin'))).toBe(false);
    expect((await listDir(ws.out)).filter((n) => n !== PARTIAL)).toEqual([]);
  });

  it('sender killed (SIGKILL): the --once receiver exits 3, keeps the partial data for a resume, nothing under the final name', async () => {
    const file = path.join(ws.src, 'big.bin');
    await sparseFile(file, 2 * 1024 ** 3);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sender = sockxfer(['send', file, address, '--json']);
    await receiver.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0);
    // The file in progress exists now (in .sockxfer-partial), so the check on what is left below is a real one.
    await expectInProgress(ws.out, 'big.bin');
    sender.child.kill('SIGKILL');
    expect(await receiver.exited, receiver.stderr()).toBe(3);
    expect(receiver.events.at(-1)).toMatchObject({ event: 'error', code: 'E_CONNECTION_LOST', exitCode: 3, name: 'big.bin' });
    await expectKeptForResume(ws.out, 'big.bin', 2 * 1024 ** 3);
  });
});

describe('fake peers', () => {
  it('a receiver that accepts and never answers: send --timeout 1 exits 4, E_TIMEOUT', async () => {
    const port = await fakeReceiver(() => {});
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 1000);
    const started = performance.now();
    const r = await send(file, `127.0.0.1:${port}`, ['--timeout', '1']);
    expect(r.code, r.stderr).toBe(4);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_TIMEOUT', exitCode: 4 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('a receiver whose frames carry protocol version 3: the sender exits 9, E_VERSION', async () => {
    let hello: Frame | undefined;
    const port = await fakeReceiver((socket) => {
      const reader = frameReader(socket);
      void reader
        .next()
        .then((frame) => {
          hello = frame;
          const welcome = encodeFrameToBuffer({ type: 'welcome', version: 3, capabilities: 0, software: 'fake/3' }, reader.session());
          welcome.writeUInt8(3, 4); // the header's version byte
          welcome.writeUInt32BE(crc32c(welcome.subarray(0, welcome.length - TRAILER_SIZE)), welcome.length - TRAILER_SIZE);
          socket.write(welcome);
        }, () => {});
    });
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 1000);
    const r = await send(file, `127.0.0.1:${port}`);
    expect(hello).toMatchObject({ type: 'hello', minVersion: 2, maxVersion: 2 });
    expect(r.code, r.stderr).toBe(9);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_VERSION', exitCode: 9 });
    expect(r.last!.message).toMatch(/version 3\b/);
  });

  // A 16 MiB chunk is over the sender's 8 MiB high-water mark on its own, and this receiver never
  // reads, so the sender is waiting in drain() when the ERROR frame arrives and must be woken by it.
  it("a receiver's ERROR (E_NO_SPACE) while the sender waits to drain: the sender exits 8 and names the receiver", async () => {
    const port = await fakeReceiver((socket) => {
      const reader = frameReader(socket);
      void (async () => {
        const hello = await reader.next();
        expect(hello.type).toBe('hello');
        socket.write(encodeFrameToBuffer({ type: 'welcome', version: 2, capabilities: 0, software: 'fake/2' }, reader.session()));
        const offer = await reader.next();
        expect(offer.type).toBe('offer');
        socket.pause(); // never read the data: the sender's queue stays full
        socket.write(
          Buffer.concat([
            encodeFrameToBuffer({ type: 'accept', entries: [{ index: 0, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] }], more: false }, reader.session()),
            encodeFrameToBuffer({ type: 'error', code: ERROR_CODES.E_NO_SPACE.wire, message: 'no space left on device' }, reader.session()),
          ]),
        );
      })().catch(() => {});
    });
    const file = path.join(ws.src, 'big.bin');
    await sparseFile(file, 64 * 1024 * 1024);
    const r = await send(file, `127.0.0.1:${port}`, ['--chunk-size', '16M', '--timeout', '1']);
    expect(r.last).toMatchObject({ event: 'error', code: 'E_NO_SPACE', exitCode: 8 });
    expect(r.last!.message).toContain(`127.0.0.1:${port}`);
    expect(r.code).toBe(8);
  });

  /** Connects a fake sender that says HELLO for versions 3-4 only; returns the receiver's answer. */
  async function helloFromTheFuture(port: number): Promise<Frame> {
    const socket = net.connect(port, '127.0.0.1');
    fakes.push({ sockets: new Set([socket]) });
    socket.on('error', () => {});
    const reader = frameReader(socket);
    socket.write(encodeFrameToBuffer({ type: 'hello', minVersion: 3, maxVersion: 4, capabilities: 0, software: 'fake-sender/4' }, randomBytes(8).readBigUInt64BE()));
    const answer = await reader.next();
    socket.end();
    return answer;
  }

  it('a sender that speaks only versions 3-4: the receiver answers ERROR E_VERSION (901)', async () => {
    const { proc: receiver, port } = await startReceiver(ws.out, ['--once']);
    const answer = await helloFromTheFuture(port);
    expect(answer).toMatchObject({ type: 'error', code: ERROR_CODES.E_VERSION.wire });
    expect(ERROR_CODES.E_VERSION.wire).toBe(901);
    expect((answer as { message: string }).message).toMatch(/3-4/);
    await receiver.waitFor((e) => e.event === 'error');
    expect(receiver.events.at(-1)).toMatchObject({ event: 'error', code: 'E_VERSION', exitCode: 9 });
    expect(await listDir(ws.out)).toEqual([]);
  });

  // A HELLO counts as the --once transfer even when it has no version in common with the receiver.
  it('a sender that speaks only versions 3-4: a --once receiver exits 9', async () => {
    const { proc: receiver, port } = await startReceiver(ws.out, ['--once']);
    expect(await helloFromTheFuture(port)).toMatchObject({ type: 'error', code: 901 });
    expect(await exitWithin(receiver, 3000, 'the --once receiver after a HELLO with no common version')).toBe(9);
  });
});

