/**
 * Issue 5, the protocol over TCP: a hostile sender (test/transfer/harness.ts: the project's
 * encoder, rawFrame() for headers it refuses to make, and raw bytes) breaks the protocol against
 * an in-process Receiver (127.0.0.1, port 0, target `base/out`). Each test ends with the exact
 * wire code (or, where the sender hung up first, the receiver's error code), nothing written
 * outside the target folder, no temporary file left (resume data only where a file's data had
 * begun), and an honest sendFile() committed byte-identical afterwards. UDP is in udp.test.ts.
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                                             | where                                                                                              |
 * |--------------------------------------------------|----------------------------------------------------------------------------------------------------|
 * | DATA before HELLO                                | test/transfer/receiver.test.ts: 'DATA before HELLO → ERROR E_PROTOCOL (900)'                        |
 * | OFFER before HELLO                               | test/transfer/receiver.test.ts: 'OFFER before HELLO → ERROR E_PROTOCOL (900)'                       |
 * | HELLO offering only other versions (1..1, 3..4)  | test/transfer/receiver.test.ts: 'HELLO with versions %s → ERROR E_VERSION (901)'                    |
 * | a version-1 frame header                         | test/transfer/receiver.test.ts: 'a version-1 sender (HELLO in a version-1 header) → …'              |
 * | bytes that are not sockxfer (an HTTP request)    | test/transfer/receiver.test.ts: 'a frame that is not sockxfer at all (bad magic) → …'               |
 * | a valid DATA frame with a bad CRC                | test/transfer/receiver.test.ts: 'a DATA frame with a flipped byte (bad CRC) → ERROR E_CHECKSUM (500)' |
 * | a DATA frame of another session                  | test/transfer/receiver.test.ts: 'a DATA frame of another session → …'                               |
 * | a connection closed without a word / mid-file    | test/transfer/receiver.test.ts: 'a connection that closes without a word …', 'a sender that just disconnects mid-transfer …' |
 * | every truncated prefix, flipped byte, unknown type and version (parser level) | test/protocol/codec.test.ts, deframer.test.ts; the fuzzer in test/fuzz/fuzz.test.ts |
 *
 * New here, end to end: unknown frame types (before and after the handshake), frames only a
 * receiver sends, header versions 0, 3 and 255 (also mid-transfer), unknown flags, a second HELLO,
 * frames cut short and then closed (in the header, in a body, in a chunk), a frame cut short
 * and the connection left open, seeded random bytes before and during a transfer, and valid
 * HELLO, OFFER and END frames with a bad CRC.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FRAME_TYPE, HEADER_SIZE, MAGIC, PROTOCOL_VERSION, encodeFrameToBuffer, type Frame } from '../../src/protocol/index.js';
import { WireWriter } from '../../src/protocol/wire.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, SESSION, digestOf, offerOf, rawFrame } from '../transfer/harness.js';
import { PARTIAL_DIR } from '../../src/transfer/journal.js';
import { events, expectCleanAndServing, expectCleanAndStillServing, partialFiles, port, restartReceiver, target, useReceiverFixture } from '../transfer/receiver-fixture.js';

useReceiverFixture();

const CHUNK = 1024;
const content = seededBytes(4 * CHUNK, 77);
const chunk = (i: number) => content.subarray(i * CHUNK, (i + 1) * CHUNK);
const HELLO: Frame = { type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'hostile/2' };
const helloBody = () => encodeFrameToBuffer(HELLO, SESSION).subarray(HEADER_SIZE, -4);

/** The receiver's next frame is an ERROR with `code` and a message matching `message`; then it hangs up. */
async function expectError(s: FakeSender, code: number, message: RegExp): Promise<void> {
  const reply = await s.next();
  expect(reply).toMatchObject({ type: 'error', code });
  expect((reply as { message: string }).message).toMatch(message);
  await s.closed;
}

/** A sender that got as far as the ACCEPT of content.bin (4 chunks), and sent its first chunk. */
async function midTransfer(): Promise<FakeSender> {
  const s = await FakeSender.connect(port);
  await s.offerAccepted('content.bin', content.length, CHUNK);
  s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
  // Whatever the test sends next comes after this chunk on the stream, so the chunk is taken first.
  return s;
}

/** The receiver kept content.bin's data for a resume: its part file, and a journal of exactly `bytes` bytes. */
async function expectKept(bytes: number): Promise<void> {
  const kept = await partialFiles();
  expect(kept).toHaveLength(2);
  const journal = kept.find((n) => n.endsWith('.journal'))!;
  expect(JSON.parse(await fs.readFile(path.join(target, PARTIAL_DIR, journal), 'utf8'))).toMatchObject({ name: 'content.bin', ranges: [[0, bytes]] });
}

describe('frame types', () => {
  it.each([
    ['127 before HELLO', 0x7f, false],
    ['255 before HELLO', 0xff, false],
    ['0 after the handshake', 0x00, true],
    ['200 after the handshake', 200, true],
  ])('an unknown frame type %s (valid CRC) → ERROR E_PROTOCOL (900)', async (_what, type, afterHello) => {
    const s = await FakeSender.connect(port);
    if (afterHello) await s.hello();
    s.sendRaw(rawFrame(type, Buffer.from('payload')));
    await expectError(s, 900, new RegExp(`unknown frame type ${type}`));
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('an unknown frame type in the middle of a file → ERROR E_PROTOCOL (900), the first chunk kept for a resume', async () => {
    const s = await midTransfer();
    s.sendRaw(rawFrame(0x7f, Buffer.alloc(16)));
    await expectError(s, 900, /unknown frame type 127/);
    await expectKept(CHUNK);
    await expectCleanAndServing('E_PROTOCOL', [], true);
  });

  it.each([
    ['WELCOME instead of HELLO', false, { type: 'welcome', version: 2, capabilities: 0, software: 'x' }, /expected hello from .*, got welcome/],
    ['ACCEPT instead of OFFER', true, { type: 'accept', entries: [], more: false }, /expected offer from .*, got accept/],
    ['a second HELLO instead of OFFER', true, HELLO, /expected offer from .*, got hello/],
  ] as Array<[string, boolean, Frame, RegExp]>)('a frame out of place (%s) → ERROR E_PROTOCOL (900)', async (_what, afterHello, frame, message) => {
    const s = await FakeSender.connect(port);
    if (afterHello) await s.hello();
    s.send(frame);
    await expectError(s, 900, message);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('a VERDICT from the sender in the middle of a file → ERROR E_PROTOCOL (900)', async () => {
    const s = await midTransfer();
    s.send({ type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'xxh128', digest: Buffer.alloc(16), message: 'fake', path: 'content.bin' });
    await expectError(s, 900, /unexpected verdict frame during the data/);
    await expectKept(CHUNK);
    await expectCleanAndServing('E_PROTOCOL', [], true);
  });
});

describe('versions and flags in the header', () => {
  it.each([0, 3, 255])('a HELLO in a version-%i header → ERROR E_VERSION (901)', async (version) => {
    const s = await FakeSender.connect(port);
    s.sendRaw(rawFrame(FRAME_TYPE.hello, helloBody(), { version }));
    await expectError(s, 901, new RegExp(`the peer speaks sockxfer protocol version ${version}; this sockxfer speaks 2`));
    await expectCleanAndServing('E_VERSION');
  });

  it('a DATA frame in a version-3 header in the middle of a file → ERROR E_VERSION (901), the first chunk kept for a resume', async () => {
    const s = await midTransfer();
    const body = Buffer.concat([new WireWriter().u32(0).u64(1).toBuffer(), chunk(1)]);
    s.sendRaw(rawFrame(FRAME_TYPE.data, body, { version: 3 }));
    await expectError(s, 901, /protocol version 3/);
    await expectKept(CHUNK);
    await expectCleanAndServing('E_VERSION', [], true);
  });

  it('a HELLO with an unknown flag (valid CRC) → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    s.sendRaw(rawFrame(FRAME_TYPE.hello, helloBody(), { flags: 0x8000 }));
    await expectError(s, 900, /unknown flags 0x8000 on a hello frame/);
    await expectCleanAndServing('E_PROTOCOL');
  });
});

describe('frames cut short', () => {
  const whole = encodeFrameToBuffer(HELLO, SESSION);

  /** The one failure the receiver reports: its code and message. */
  async function expectFailure(code: string, message: RegExp): Promise<void> {
    const failure = await events.failed.next();
    expect(failure.error.code).toBe(code);
    expect(failure.error.message).toMatch(message);
  }

  it.each([
    ['in the magic (3 bytes)', 3],
    ['in the header (10 bytes)', 10],
    ['right after the header (20 bytes)', HEADER_SIZE],
    ['in the body', HEADER_SIZE + 5],
    ['in the CRC (all but its last byte)', whole.length - 1],
  ])('a HELLO cut %s, then the connection closed → E_CONNECTION_LOST at once, not after the idle timeout', async (_what, length) => {
    const s = await FakeSender.connect(port);
    s.sendRaw(whole.subarray(0, length));
    s.socket.end();
    await s.closed;
    // E_TIMEOUT here would mean the receiver sat on the half frame until its idle timeout.
    await expectFailure('E_CONNECTION_LOST', /closed the connection in the middle of a frame/);
    await expectCleanAndStillServing([]);
  });

  it('a DATA frame cut in the middle of its chunk, then the connection closed → E_CONNECTION_LOST; the whole chunk before it kept for a resume', async () => {
    const s = await midTransfer();
    const next = encodeFrameToBuffer({ type: 'data', index: 0, chunk: 1, data: [chunk(1)] }, SESSION);
    s.sendRaw(next.subarray(0, HEADER_SIZE + 12 + 500));
    s.socket.end();
    await s.closed;
    await expectFailure('E_CONNECTION_LOST', /closed the connection in the middle of a frame/);
    await expectKept(CHUNK);
    await expectCleanAndStillServing([], true);
  });

  it('an OFFER cut short and the connection left open → E_TIMEOUT (400) after the idle timeout, and the connection closed', async () => {
    await restartReceiver({ timeoutMs: 300 });
    const s = await FakeSender.connect(port);
    await s.hello();
    const offer = encodeFrameToBuffer(offerOf('x.bin', 10, CHUNK), SESSION);
    s.sendRaw(offer.subarray(0, offer.length - 10));
    // Told with an ERROR 400 where the transport still can, else just dropped: either way, closed.
    const reply = await s.next().catch((err: Error) => err);
    if (!(reply instanceof Error)) expect(reply).toMatchObject({ type: 'error', code: 400 });
    else expect(reply.message).toBe('connection closed');
    await s.closed;
    await expectFailure('E_TIMEOUT', /no progress from 127\.0\.0\.1:\d+/);
    await expectCleanAndStillServing([]);
  });
});

describe('random bytes on the TCP port', () => {
  it.each([1, 2, 3])('64 KiB of seeded random bytes (seed %i) instead of HELLO → ERROR E_PROTOCOL (900), bad magic', async (seed) => {
    const s = await FakeSender.connect(port);
    s.sendRaw(seededBytes(64 * 1024, seed));
    await expectError(s, 900, /the peer does not speak sockxfer \(bad magic\)/);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('random bytes in the middle of a file → ERROR E_PROTOCOL (900), the first chunk kept for a resume', async () => {
    const s = await midTransfer();
    s.sendRaw(seededBytes(4096, 4));
    await expectError(s, 900, /bad magic/);
    await expectKept(CHUNK);
    await expectCleanAndServing('E_PROTOCOL', [], true);
  });

  it('a sockxfer header over random bytes (the magic, version 2, a DATA type, a plausible length) → ERROR E_CHECKSUM (500)', async () => {
    const s = await midTransfer();
    const head = Buffer.alloc(HEADER_SIZE);
    head.writeUInt32BE(MAGIC, 0);
    head.writeUInt8(PROTOCOL_VERSION, 4);
    head.writeUInt8(FRAME_TYPE.data, 5);
    head.writeBigUInt64BE(SESSION, 8);
    head.writeUInt32BE(12 + CHUNK, 16);
    s.sendRaw(Buffer.concat([head, seededBytes(12 + CHUNK + 4, 5)]));
    await expectError(s, 500, /data frame failed its CRC32C check/);
    await expectKept(CHUNK);
    await expectCleanAndServing('E_CHECKSUM', [], true);
  });
});

describe('a valid frame with a bad CRC', () => {
  /** `frame` encoded, its last (CRC) byte flipped. */
  const badCrc = (frame: Frame) => {
    const b = encodeFrameToBuffer(frame, SESSION);
    b[b.length - 1]! ^= 0x01;
    return b;
  };

  it('HELLO → ERROR E_CHECKSUM (500)', async () => {
    const s = await FakeSender.connect(port);
    s.sendRaw(badCrc(HELLO));
    await expectError(s, 500, /hello frame failed its CRC32C check/);
    await expectCleanAndServing('E_CHECKSUM');
  });

  it('OFFER → ERROR E_CHECKSUM (500), nothing planned or created', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(badCrc({ ...offerOf('sub/x.bin', 10, CHUNK) }));
    await expectError(s, 500, /offer frame failed its CRC32C check/);
    await expectCleanAndServing('E_CHECKSUM');
  });

  it('END after every chunk → ERROR E_CHECKSUM (500), no file under the final name, the data kept for a resume', async () => {
    const s = await midTransfer();
    for (const i of [1, 2, 3]) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
    s.sendRaw(badCrc({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false }));
    await expectError(s, 500, /end frame failed its CRC32C check/);
    await expectKept(content.length);
    await expectCleanAndServing('E_CHECKSUM', [], true);
  });
});
