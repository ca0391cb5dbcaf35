/**
 * The Receiver in-process, on 127.0.0.1 port 0 with a temporary target folder, played against
 * a hostile sender built from node:net and the project's own encoder. For every attack: the
 * exact reply frame (type and wire code), nothing left in the target folder (no file, no
 * .part), and the receiver still serves an honest sendFile() afterwards, byte for byte.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { ERROR_CODES, SockxferError, type ErrorCode } from '../../src/errors.js';
import {
  FRAME_TYPE,
  HASH_ALGORITHMS,
  HEADER_SIZE,
  MAGIC,
  StreamDeframer,
  WHOLE_TRANSFER,
  crc32c,
  encodeFrameToBuffer,
  type Frame,
  type HashAlgorithm,
  type OfferFrame,
} from '../../src/protocol/index.js';
import { WireWriter } from '../../src/protocol/wire.js';
import { connectTcp } from '../../src/transport/tcp.js';
import type { TransferInfo, TransferResult } from '../../src/transfer/events.js';
import { createHasher } from '../../src/transfer/hash.js';
import { Receiver, type ReceiverObserver } from '../../src/transfer/receiver.js';
import { sendFile } from '../../src/transfer/sender.js';
import { seededBytes } from '../helpers/seeded.js';

// ---------------------------------------------------------------------------------------------
// Helpers

async function digestOf(algorithm: HashAlgorithm, data: Buffer): Promise<Buffer> {
  const h = await createHasher(algorithm);
  h.update(data);
  return h.digest();
}

const wire = (code: ErrorCode) => ERROR_CODES[code].wire;

/** A queue of events that a test awaits one by one, whether they came before or after it asked. */
class Queue<T> {
  private readonly items: T[] = [];
  private readonly waiting: Array<(item: T) => void> = [];

  push(item: T): void {
    const w = this.waiting.shift();
    if (w) w(item);
    else this.items.push(item);
  }

  next(): Promise<T> {
    const item = this.items.shift();
    return item !== undefined ? Promise.resolve(item) : new Promise((resolve) => this.waiting.push(resolve));
  }

  get length(): number {
    return this.items.length;
  }
}

const SESSION = 0x5eed_0000_0000_0001n;

/** A sender that says exactly what a test tells it to, and records every frame the receiver sends. */
class FakeSender {
  private readonly deframer = new StreamDeframer();
  private readonly frames = new Queue<Frame | Error>();
  /** Sessions of the frames received, in order. */
  readonly sessions: bigint[] = [];
  /** Resolves when the receiver has closed the connection. */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const d of this.deframer.push(chunk)) {
          this.sessions.push(d.session);
          this.frames.push(d.frame);
        }
      } catch (err) {
        this.frames.push(err as Error);
      }
    });
    // Writes after the receiver hung up may fail; the test looks at what was received.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.frames.push(new Error('connection closed')));
  }

  static async connect(port: number): Promise<FakeSender> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const s = new FakeSender(socket);
    open.push(s);
    return s;
  }

  send(frame: Frame, session = SESSION): void {
    this.socket.write(encodeFrameToBuffer(frame, session));
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next frame from the receiver; rejects once the connection is closed. */
  async next(): Promise<Frame> {
    const item = await this.frames.next();
    if (item instanceof Error) {
      this.frames.push(item); // closed stays closed
      throw item;
    }
    return item;
  }

  /** HELLO, and the receiver's WELCOME. */
  async hello(minVersion = 1, maxVersion = 1): Promise<void> {
    this.send({ type: 'hello', minVersion, maxVersion, capabilities: 0, software: 'hostile/1' });
    const welcome = await this.next();
    expect(welcome).toMatchObject({ type: 'welcome', version: 1 });
  }

  /** HELLO and an OFFER of one file, up to the receiver's ACCEPT. */
  async offerAccepted(name: string, size: number, chunkSize: number, hash: HashAlgorithm = 'xxh128'): Promise<void> {
    await this.hello();
    this.send(offerOf(name, size, chunkSize, hash));
    expect(await this.next()).toEqual({ type: 'accept', entries: [{ index: 0, action: 'send', have: [] }] });
  }
}

const open: FakeSender[] = [];

function offerOf(name: string, size: number, chunkSize: number, hash: HashAlgorithm = 'xxh128'): OfferFrame {
  return {
    type: 'offer',
    chunkSize,
    hash,
    fileCount: 1,
    totalBytes: size,
    more: false,
    entries: [{ index: 0, kind: 'file', name, size, mode: 0o644, mtimeMs: 1_600_000_000_000 }],
  };
}

/** A frame built by hand (header, body, CRC32C), for bodies the project's encoder refuses to make. */
function rawFrame(type: number, body: Buffer, session = SESSION): Buffer {
  const head = Buffer.alloc(HEADER_SIZE);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt8(1, 4);
  head.writeUInt8(type, 5);
  head.writeUInt16BE(0, 6);
  head.writeBigUInt64BE(session, 8);
  head.writeUInt32BE(body.length, 16);
  const unsealed = Buffer.concat([head, body]);
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32BE(crc32c(unsealed));
  return Buffer.concat([unsealed, trailer]);
}

/** An OFFER of one file whose name may be longer than the encoder allows. */
function rawOffer(name: string, size: number, chunkSize: number): Buffer {
  const body = new WireWriter()
    .u32(chunkSize)
    .u8(HASH_ALGORITHMS.xxh128)
    .u32(1)
    .u64(size)
    .u16(1)
    .u32(0)
    .u8(0)
    .u64(size)
    .u32(0o644)
    .u64(1_600_000_000_000)
    .str16(name, 4096)
    .toBuffer();
  return rawFrame(FRAME_TYPE.offer, body);
}

// ---------------------------------------------------------------------------------------------
// One receiver per test, on a fresh target folder.

let target: DirectoryResult;
let source: DirectoryResult;
let receiver: Receiver;
let port: number;
let events: {
  failed: Queue<{ peer: string; info: TransferInfo | null; error: SockxferError }>;
  done: Queue<TransferResult>;
  start: Queue<TransferInfo>;
  progress: Queue<number>;
};

async function startReceiver(overwrite = false): Promise<void> {
  events = { failed: new Queue(), done: new Queue(), start: new Queue(), progress: new Queue() };
  const observer: ReceiverObserver = {
    failed: (peer, info, error) => events.failed.push({ peer, info, error }),
    done: (result) => events.done.push(result),
    start: (info) => events.start.push(info),
    progress: (_info, done) => events.progress.push(done),
  };
  receiver = new Receiver({ dir: target.path, host: '127.0.0.1', port: 0, once: false, overwrite, timeoutMs: 10_000 }, observer);
  const [address] = await receiver.start();
  expect(address).toMatchObject({ host: '127.0.0.1', transport: 'tcp' });
  port = address!.port;
}

beforeEach(async () => {
  target = await dir({ unsafeCleanup: true });
  source = await dir({ unsafeCleanup: true });
  await startReceiver();
});

afterEach(async () => {
  for (const s of open.splice(0)) s.socket.destroy();
  await receiver.stop(new SockxferError('E_INTERRUPTED', 'test over'));
  await target.cleanup();
  await source.cleanup();
});

/** Writes a source file and sends it with sendFile; checks it arrived byte for byte, with mode and mtime. */
async function honestTransfer(name: string, content: Buffer, options: { chunkSize?: number; hash?: HashAlgorithm } = {}): Promise<TransferResult> {
  const file = path.join(source.path, name);
  await fs.writeFile(file, content);
  await fs.chmod(file, 0o640);
  const mtime = new Date(Date.UTC(2022, 1, 3, 4, 5, 6, 789));
  await fs.utimes(file, mtime, mtime);
  const hash = options.hash ?? 'xxh128';
  const result = await sendFile({ file, target: { host: '127.0.0.1', port }, hash, chunkSize: options.chunkSize ?? 1024, timeoutMs: 10_000 });
  const expectedDigest = (await digestOf(hash, content)).toString('hex');
  expect(result).toMatchObject({ name, bytes: content.length, hash, transport: 'tcp', digest: expectedDigest });
  const done = await events.done.next();
  expect(done).toMatchObject({ name, bytes: content.length, digest: expectedDigest, path: path.join(target.path, name) });
  const arrived = path.join(target.path, name);
  expect((await fs.readFile(arrived)).equals(content)).toBe(true);
  const st = await fs.stat(arrived);
  expect(st.mode & 0o777).toBe(0o640);
  expect(Math.abs(st.mtimeMs - mtime.getTime())).toBeLessThan(1);
  return result;
}

/** After a hostile session: its failure was reported, the folder holds only `keep`, and an honest transfer still works. */
async function expectCleanAndServing(code: ErrorCode, keep: string[] = []): Promise<void> {
  const failure = await events.failed.next();
  expect(failure.error).toBeInstanceOf(SockxferError);
  expect(failure.error.code).toBe(code);
  expect((await fs.readdir(target.path)).sort()).toEqual([...keep].sort());
  const content = seededBytes(5000, 99);
  await honestTransfer('honest.bin', content);
  expect((await fs.readdir(target.path)).sort()).toEqual([...keep, 'honest.bin'].sort());
  expect(events.failed.length).toBe(0);
}

// ---------------------------------------------------------------------------------------------

describe('Receiver against a hostile sender', () => {
  it('the hand-made frame builder agrees with the encoder (so the raw offers below are well formed)', () => {
    expect(rawOffer('ok.txt', 10, 1024).equals(encodeFrameToBuffer(offerOf('ok.txt', 10, 1024), SESSION))).toBe(true);
  });

  it.each([
    ['"../x"', '../x'],
    ['"a/b"', 'a/b'],
    ['".."', '..'],
    ['"."', '.'],
    ['""', ''],
    ['"a\\\\b"', 'a\\b'],
    ['an ANSI escape', 'a\u001b[2Jb'],
    ['a NUL', 'a\u0000b'],
    ['a C1 control', 'a\u0085b'],
  ])('offer named %s → REFUSE E_BAD_NAME (602)', async (_what, name) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf(name, 100, 1024));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 602, index: WHOLE_TRANSFER });
    // The refusal names the file, escaped: no control character reaches the sender's terminal.
    // eslint-disable-next-line no-control-regex
    expect((reply as { message: string }).message).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    await s.closed;
    await expectCleanAndServing('E_BAD_NAME');
  });

  it('the refusal of an escape-laden name shows it escaped', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf('a\u001b[2Jb', 100, 1024));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 602 });
    expect((reply as { message: string }).message).toContain('a\\x1b[2Jb');
    await expectCleanAndServing('E_BAD_NAME');
  });

  // Names longer than NAME_MAX still decode (the wire allows 4 KiB), so the receiver's name check
  // refuses them like every other unacceptable name.
  it.each([
    ['256 ASCII bytes', 'a'.repeat(256)],
    ['128 × "é" (256 bytes)', 'é'.repeat(128)],
  ])('offer with a name of %s → REFUSE E_BAD_NAME (602)', async (_what, name) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(rawOffer(name, 100, 1024));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 602, index: WHOLE_TRANSFER });
    await expectCleanAndServing('E_BAD_NAME');
  });

  it('existing target without overwrite → REFUSE E_EXISTS (601), the file untouched', async () => {
    await fs.writeFile(path.join(target.path, 'exists.txt'), 'keep me');
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf('exists.txt', 100, 1024));
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 601, index: WHOLE_TRANSFER });
    await s.closed;
    await expectCleanAndServing('E_EXISTS', ['exists.txt']);
    expect(await fs.readFile(path.join(target.path, 'exists.txt'), 'utf8')).toBe('keep me');
  });

  it('an existing symlink of that name → REFUSE E_EXISTS (601), its target untouched', async () => {
    const victim = path.join(source.path, 'victim.txt');
    await fs.writeFile(victim, 'outside');
    await fs.symlink(victim, path.join(target.path, 'link'));
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf('link', 7, 1024));
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 601 });
    await expectCleanAndServing('E_EXISTS', ['link']);
    expect(await fs.readFile(victim, 'utf8')).toBe('outside');
    expect((await fs.lstat(path.join(target.path, 'link'))).isSymbolicLink()).toBe(true);
  });

  it('DATA before HELLO → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    s.send({ type: 'data', index: 0, chunk: 0, data: [Buffer.from('sneaky')] });
    expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
    expect(s.sessions).toEqual([SESSION]);
    await s.closed;
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('OFFER before HELLO → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    s.send(offerOf('early.txt', 10, 1024));
    expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('HELLO with versions 2..3 → ERROR E_VERSION (901)', async () => {
    const s = await FakeSender.connect(port);
    s.send({ type: 'hello', minVersion: 2, maxVersion: 3, capabilities: 0, software: 'future/9' });
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 901 });
    expect((reply as { message: string }).message).toMatch(/2-3/);
    await s.closed;
    await expectCleanAndServing('E_VERSION');
  });

  it('HELLO 1..5 is answered with version 1', async () => {
    const s = await FakeSender.connect(port);
    await s.hello(1, 5);
    s.socket.end();
    await s.closed;
    await expectCleanAndServing('E_CONNECTION_LOST');
  });

  it('a frame that is not sockxfer at all (bad magic) → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    s.sendRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
    await expectCleanAndServing('E_PROTOCOL');
  });

  describe('broken DATA', () => {
    // 3 full chunks of 1024 and a last one of 100.
    const CHUNK = 1024;
    const content = seededBytes(3 * CHUNK + 100, 7);
    const chunk = (i: number) => content.subarray(i * CHUNK, Math.min(content.length, (i + 1) * CHUNK));

    it('chunk index past the end → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('past.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
      s.send({ type: 'data', index: 0, chunk: 4, data: [Buffer.alloc(CHUNK)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/chunk 4 is past the end/);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('chunk index far past the end (2^40) → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('far.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 2 ** 40, data: [Buffer.alloc(CHUNK)] });
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it.each([
      ['a full chunk one byte short', 0, 1023],
      ['a full chunk one byte long', 1, 1025],
      ['an empty chunk', 2, 0],
      ['the last chunk at full size', 3, 1024],
      ['the last chunk one byte short', 3, 99],
    ])('wrong chunk length (%s) → ERROR E_PROTOCOL (900)', async (_what, index, length) => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('length.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: index, data: [Buffer.alloc(length, 1)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toContain(`chunk ${index} has ${length} bytes`);
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('a chunk twice → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('twice.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 1, data: [chunk(1)] });
      s.send({ type: 'data', index: 0, chunk: 1, data: [chunk(1)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/chunk 1 arrived twice/);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('DATA for a file index that was not offered → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('index.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 1, chunk: 0, data: [chunk(0)] });
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('a DATA frame with a flipped byte (bad CRC) → ERROR E_CHECKSUM (500)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('crc.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
      const bad = encodeFrameToBuffer({ type: 'data', index: 0, chunk: 1, data: [chunk(1)] }, SESSION);
      bad[HEADER_SIZE + 12 + 500]! ^= 0x80;
      s.sendRaw(bad);
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 500 });
      expect((reply as { message: string }).message).toMatch(/CRC32C/);
      await s.closed;
      await expectCleanAndServing('E_CHECKSUM');
    });

    it('a DATA frame of another session → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('session.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] }, SESSION + 1n);
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('every chunk right but END with a wrong digest → VERDICT not committed, E_HASH_MISMATCH (501), no file', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('mismatch.bin', content.length, CHUNK);
      for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      const real = await digestOf('xxh128', content);
      const wrong = Buffer.from(real);
      wrong[0]! ^= 0xff;
      s.send({ type: 'end', index: 0, hash: 'xxh128', digest: wrong });
      const verdict = await s.next();
      expect(verdict).toMatchObject({ type: 'verdict', index: 0, committed: false, code: 501, hash: 'xxh128' });
      // The receiver reports the digest of what it actually received.
      expect((verdict as { digest: Buffer }).digest.equals(real)).toBe(true);
      await s.closed;
      await expectCleanAndServing('E_HASH_MISMATCH');
    });

    it('END with another hash algorithm than offered → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('algo.bin', content.length, CHUNK);
      for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      s.send({ type: 'end', index: 0, hash: 'sha256', digest: await digestOf('sha256', content) });
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('END twice → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('end2.bin', content.length, CHUNK);
      const digest = await digestOf('xxh128', content);
      s.send({ type: 'end', index: 0, hash: 'xxh128', digest });
      s.send({ type: 'end', index: 0, hash: 'xxh128', digest });
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it.each([
      // A peer stopped by a signal is a lost connection for this side (see peer.ts).
      [13000, 'E_CONNECTION_LOST'],
      [800, 'E_IO'],
      [803, 'E_NO_SPACE'],
    ] as const)('a sender that sends an ERROR frame (%i) mid-transfer: no reply, no file, no .part', async (code, local) => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('abandoned.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
      s.send({ type: 'data', index: 0, chunk: 2, data: [chunk(2)] });
      s.send({ type: 'error', code, message: 'giving up' });
      await s.closed;
      await expect(s.next()).rejects.toThrow('connection closed');
      const failure = await events.failed.next();
      expect(failure.error.code).toBe(local);
      expect(failure.error.remote).toBe(true);
      expect(failure.error.message).toContain('giving up');
      expect(failure.info).toMatchObject({ name: 'abandoned.bin', bytes: content.length });
      expect(await fs.readdir(target.path)).toEqual([]);
      await honestTransfer('honest.bin', seededBytes(5000, 99));
    });

    it('a sender that just disconnects mid-transfer: no file, no .part', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('dropped.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
      s.socket.end();
      await s.closed;
      await expectCleanAndServing('E_CONNECTION_LOST');
    });

    it('chunks in reverse order with END first still commit the exact bytes', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('reverse.bin', content.length, CHUNK, 'sha256');
      const digest = await digestOf('sha256', content);
      s.send({ type: 'end', index: 0, hash: 'sha256', digest });
      for (let i = 3; i >= 0; i--) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      const verdict = await s.next();
      expect(verdict).toMatchObject({ type: 'verdict', index: 0, committed: true, code: 0, hash: 'sha256' });
      expect((verdict as { digest: Buffer }).digest.equals(digest)).toBe(true);
      const done = await events.done.next();
      expect(done.path).toBe(path.join(target.path, 'reverse.bin'));
      expect((await fs.readFile(done.path!)).equals(content)).toBe(true);
      expect((await fs.stat(done.path!)).mode & 0o777).toBe(0o644);
      expect(await fs.readdir(target.path)).toEqual(['reverse.bin']);
    });
  });

  it('an offer with fileCount 2 → REFUSE E_UNSUPPORTED (603)', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send({
      type: 'offer',
      chunkSize: 1024,
      hash: 'xxh128',
      fileCount: 2,
      totalBytes: 20,
      more: false,
      entries: [
        { index: 0, kind: 'file', name: 'one', size: 10, mode: 0o644, mtimeMs: 0 },
        { index: 1, kind: 'file', name: 'two', size: 10, mode: 0o644, mtimeMs: 0 },
      ],
    });
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 603, index: WHOLE_TRANSFER });
    await s.closed;
    await expectCleanAndServing('E_UNSUPPORTED');
  });

  it('an offer announcing 4 billion files with more frames to follow is refused at its first frame', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send({
      type: 'offer',
      chunkSize: 1024,
      hash: 'xxh128',
      fileCount: 0xffffffff,
      totalBytes: 10,
      more: true,
      entries: [{ index: 0, kind: 'file', name: 'one', size: 10, mode: 0o644, mtimeMs: 0 }],
    });
    // The receiver answers without waiting for the continuation frames it was promised.
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 603, index: WHOLE_TRANSFER });
    await s.closed;
    await expectCleanAndServing('E_UNSUPPORTED');
  });

  it('an offer of a directory → REFUSE E_UNSUPPORTED (603)', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const offer = offerOf('folder', 0, 1024);
    s.send({ ...offer, entries: [{ ...offer.entries[0]!, kind: 'directory' }] });
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 603 });
    await expectCleanAndServing('E_UNSUPPORTED');
  });

  it.each([
    ['100 (below the minimum 512)', 100],
    ['511', 511],
    ['16 MiB + 1 (above the maximum)', 16 * 1024 * 1024 + 1],
  ])('chunk size %s → REFUSE E_UNSUPPORTED (603)', async (_what, chunkSize) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf('chunky.bin', 10_000, chunkSize));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 603, index: WHOLE_TRANSFER });
    expect((reply as { message: string }).message).toContain(`chunk size ${chunkSize}`);
    await s.closed;
    await expectCleanAndServing('E_UNSUPPORTED');
  });

  it('an offer whose total disagrees with the file size → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send({ ...offerOf('total.bin', 100, 1024), totalBytes: 99 });
    expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('a connection that closes without a word is reported and does not disturb the next one', async () => {
    const s = await FakeSender.connect(port);
    s.socket.end();
    await s.closed;
    await expectCleanAndServing('E_CONNECTION_LOST');
  });

  it('every wire code checked above matches ERROR_CODES', () => {
    expect([wire('E_BAD_NAME'), wire('E_EXISTS'), wire('E_UNSUPPORTED')]).toEqual([602, 601, 603]);
    expect([wire('E_PROTOCOL'), wire('E_VERSION'), wire('E_CHECKSUM'), wire('E_HASH_MISMATCH'), wire('E_INTERRUPTED')]).toEqual([900, 901, 500, 501, 13000]);
  });
});

describe('Receiver with an honest sender', () => {
  it('receives 3 MiB + 17 bytes in 64 KiB chunks exactly, with mode and mtime', async () => {
    const content = seededBytes(3 * 1024 * 1024 + 17, 2024);
    const result = await honestTransfer('three-mib.bin', content, { chunkSize: 65536 });
    expect(result.bytes).toBe(3 * 1024 * 1024 + 17);
    expect(await fs.readdir(target.path)).toEqual(['three-mib.bin']);
    expect(events.failed.length).toBe(0);
  });

  it('receives a 0-byte file', async () => {
    await honestTransfer('empty', Buffer.alloc(0));
    expect((await fs.stat(path.join(target.path, 'empty'))).size).toBe(0);
    expect(await fs.readdir(target.path)).toEqual(['empty']);
  });

  it('receives with sha256, and a unicode name', async () => {
    await honestTransfer('résumé 📄.pdf', seededBytes(70_000, 3), { hash: 'sha256', chunkSize: 4096 });
    expect(await fs.readdir(target.path)).toEqual(['résumé 📄.pdf']);
  });

  it('receives a file whose name is 255 bytes of multi-byte characters', async () => {
    const name = '€'.repeat(85);
    await honestTransfer(name, seededBytes(2000, 4));
    expect(await fs.readdir(target.path)).toEqual([name]);
  });

  it('receives a name that starts with U+FEFF intact (not stripped as a byte-order mark)', async () => {
    await honestTransfer('\uFEFFbom.txt', Buffer.from('bom'));
    expect(await fs.readdir(target.path)).toEqual(['\uFEFFbom.txt']);
  });

  it('a second sender of the same name is refused with E_EXISTS; sendFile rejects with it', async () => {
    await honestTransfer('twice.txt', Buffer.from('first'));
    const file = path.join(source.path, 'twice.txt');
    await fs.writeFile(file, 'second');
    const err = await sendFile({ file, target: { host: '127.0.0.1', port }, hash: 'xxh128', chunkSize: 1024, timeoutMs: 10_000 }).then(
      () => expect.fail('expected a refusal'),
      (e: unknown) => e as SockxferError,
    );
    expect(err).toBeInstanceOf(SockxferError);
    expect(err.code).toBe('E_EXISTS');
    expect(err.remote).toBe(true);
    expect((await events.failed.next()).error.code).toBe('E_EXISTS');
    expect(await fs.readFile(path.join(target.path, 'twice.txt'), 'utf8')).toBe('first');
  });
});

describe('Receiver.stop()', () => {
  it('during a transfer: tells the sender E_INTERRUPTED, removes the .part file, stops listening', async () => {
    const MIB = 1024 * 1024;
    const s = await FakeSender.connect(port);
    await s.offerAccepted('big.bin', 10 * MIB, MIB);
    const info = await events.start.next();
    expect(info).toMatchObject({ name: 'big.bin', bytes: 10 * MIB, hash: 'xxh128', transport: 'tcp' });
    s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(MIB, 8)] });
    expect(await events.progress.next()).toBe(MIB);
    const during = await fs.readdir(target.path);
    expect(during).toHaveLength(1);
    expect(during[0]).toMatch(/^\.sockxfer-[0-9a-f]{12}-big\.bin\.part$/);
    expect(receiver.activeSessions).toBe(1);

    await receiver.stop(new SockxferError('E_INTERRUPTED', 'test'));
    expect(await fs.readdir(target.path)).toEqual([]);
    expect(receiver.activeSessions).toBe(0);
    expect(await s.next()).toEqual({ type: 'error', code: 13000, message: 'test' });
    await s.closed;
    const failure = await events.failed.next();
    expect(failure.error.code).toBe('E_INTERRUPTED');
    expect(failure.info).toMatchObject({ name: 'big.bin' });

    const refused = await connectTcp({ host: '127.0.0.1', port }, { timeoutMs: 5000, session: 1n }).then(
      (t) => {
        t.destroy();
        return expect.fail('the stopped receiver still accepted a connection');
      },
      (e: unknown) => e as SockxferError,
    );
    expect(refused.code).toBe('E_CONNECT_REFUSED');
  });

  it('with nothing in progress resolves and leaves the folder as it was', async () => {
    await honestTransfer('kept.bin', seededBytes(100, 1));
    await receiver.stop(new SockxferError('E_INTERRUPTED', 'test'));
    expect(await fs.readdir(target.path)).toEqual(['kept.bin']);
  });
});
