/**
 * The Receiver in-process, on 127.0.0.1 port 0 with a temporary target folder, played against
 * a hostile sender built from node:net and the project's own encoder (protocol version 2). For
 * every attack: the exact reply (ACCEPT entry, REFUSE or ERROR, with its wire code), nothing left
 * in the target folder (no file, no .part; see receiver-fixture.ts for the resume data a receiver
 * may keep), nothing written beside it, and the receiver still serves an honest sendFile()
 * afterwards, byte for byte. Offers of many entries are in hostile-offers.test.ts.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, SockxferError, type ErrorCode } from '../../src/errors.js';
import { FRAME_TYPE, HASH_ALGORITHMS, HEADER_SIZE, MAX_WIRE_NAME_BYTES, WHOLE_TRANSFER, encodeFrameToBuffer, type AcceptEntry } from '../../src/protocol/index.js';
import { WireWriter } from '../../src/protocol/wire.js';
import { connectTcp } from '../../src/transport/tcp.js';
import { sendFile } from '../../src/transfer/sender.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, SESSION, digestOf, offerOf, rawFrame } from './harness.js';
import {
  events,
  expectCleanAndServing,
  expectCleanAndStillServing,
  expectEntriesFailedCleanAndServing,
  expectOnlyFailed,
  expectRefused,
  expectResumeDataOnly,
  honestTransfer,
  partialFiles,
  port,
  receiver,
  source,
  target,
  useReceiverFixture,
  visibleTree,
} from './receiver-fixture.js';

useReceiverFixture();

const wire = (code: ErrorCode) => ERROR_CODES[code].wire;

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
    .u64(1_600_000_000_123)
    .str16(name, 65535)
    .toBuffer();
  return rawFrame(FRAME_TYPE.offer, body);
}

// ---------------------------------------------------------------------------------------------

describe('Receiver against a hostile sender', () => {
  it('the hand-made frame builder agrees with the encoder (so the raw offers below are well formed)', () => {
    expect(rawOffer('ok.txt', 10, 1024).equals(encodeFrameToBuffer(offerOf('ok.txt', 10, 1024), SESSION))).toBe(true);
  });

  it.each([
    ['"../x"', '../x'],
    ['".."', '..'],
    ['"."', '.'],
    ['""', ''],
    ['"a\\\\b"', 'a\\b'],
    ['an ANSI escape', 'a\u001b[2Jb'],
    ['a NUL', 'a\u0000b'],
    ['a C1 control', 'a\u0085b'],
  ])('offer named %s → ACCEPT refuse E_BAD_NAME (602), VERDICT failed', async (_what, name) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerOf(name, 100, 1024));
    expect(accepts).toHaveLength(1);
    // The refusal names the file, escaped: no control character reaches the sender's terminal.
    expectRefused(accepts[0], 0, 602, /^refused a name: .*: ".*"$/);
    expectOnlyFailed(await s.verdicts(), 602);
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']]);
  });

  it('the refusal of an escape-laden name shows it escaped', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const [accept] = await s.offer(offerOf('a\u001b[2Jb', 100, 1024));
    expect(accept).toMatchObject({ action: 'refuse', code: 602 });
    expect(accept!.message).toContain('a\\x1b[2Jb');
    expect((await s.verdicts())[0]!.message).toContain('a\\x1b[2Jb');
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']]);
  });

  // Names longer than NAME_MAX still decode (the wire allows more), so the receiver's name check
  // refuses them like every other unacceptable name.
  it.each([
    ['256 ASCII bytes', 'a'.repeat(256)],
    ['128 × "é" (256 bytes)', 'é'.repeat(128)],
  ])('offer with a name of %s → ACCEPT refuse E_BAD_NAME (602)', async (_what, name) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(rawOffer(name, 100, 1024));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'accept', more: false });
    const entries = (reply as { entries: AcceptEntry[] }).entries;
    expect(entries).toHaveLength(1);
    // The ACCEPT message is cut to its 200 bytes; the reason comes first, so it says why.
    expectRefused(entries[0], 0, 602, /^refused a name: the name is \d+ bytes long/);
    const verdicts = await s.verdicts();
    expectOnlyFailed(verdicts, 602);
    expect(verdicts[0]!.message).toMatch(/^refused a name: the name is 256 bytes long, the limit is 255: "/);
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']]);
  });

  it(`a name longer than any wire name field (${MAX_WIRE_NAME_BYTES + 1} bytes) → ERROR E_PROTOCOL (900)`, async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(rawOffer('n/'.repeat(MAX_WIRE_NAME_BYTES / 2) + 'x', 100, 1024));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 900 });
    expect((reply as { message: string }).message).toMatch(/name is 4353 bytes, the limit is 4352/);
    await s.closed;
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('existing target under policy refuse → ACCEPT refuse E_EXISTS (601), the file untouched', async () => {
    await fs.mkdir(target, { recursive: true });
    await fs.writeFile(path.join(target, 'exists.txt'), 'keep me');
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerOf('exists.txt', 100, 1024));
    expect(accepts).toHaveLength(1);
    expectRefused(accepts[0], 0, 601, /exists\.txt already exists in the target folder/);
    expectOnlyFailed(await s.verdicts(), 601);
    await expectEntriesFailedCleanAndServing([[0, 'E_EXISTS']], ['exists.txt']);
    expect(await fs.readFile(path.join(target, 'exists.txt'), 'utf8')).toBe('keep me');
  });

  it('an existing symlink of that name → ACCEPT refuse E_EXISTS (601), its target untouched', async () => {
    const victim = path.join(source.path, 'victim.txt');
    await fs.writeFile(victim, 'outside');
    await fs.symlink(victim, path.join(target, 'link'));
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerOf('link', 7, 1024));
    expectRefused(accepts[0], 0, 601, /link exists in the target folder and is not a regular file/);
    expectOnlyFailed(await s.verdicts(), 601);
    await expectEntriesFailedCleanAndServing([[0, 'E_EXISTS']], ['link']);
    expect(await fs.readFile(victim, 'utf8')).toBe('outside');
    expect((await fs.lstat(path.join(target, 'link'))).isSymbolicLink()).toBe(true);
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

  it.each([
    ['3..4 (newer than this receiver)', 3, 4],
    ['1..1 (version 1 only)', 1, 1],
  ])('HELLO with versions %s → ERROR E_VERSION (901)', async (_what, min, max) => {
    const s = await FakeSender.connect(port);
    s.send({ type: 'hello', minVersion: min, maxVersion: max, capabilities: 0, software: 'other/9' });
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 901 });
    expect((reply as { message: string }).message).toContain(`speaks protocol versions ${min}-${max}; this receiver speaks 2-2`);
    await s.closed;
    await expectCleanAndServing('E_VERSION');
  });

  it('a version-1 sender (HELLO in a version-1 header) → ERROR E_VERSION (901)', async () => {
    const s = await FakeSender.connect(port);
    const body = new WireWriter().u8(1).u8(1).u32(0).str16('sockxfer/0.0.1', 64).toBuffer();
    s.sendRaw(rawFrame(FRAME_TYPE.hello, body, { version: 1 }));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 901 });
    expect((reply as { message: string }).message).toMatch(/protocol version 1; this sockxfer speaks 2/);
    await s.closed;
    await expectCleanAndServing('E_VERSION');
  });

  it('HELLO 1..5 is answered with version 2', async () => {
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
      await expectCleanAndServing('E_PROTOCOL', [], true);
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
      expect((reply as { message: string }).message).toMatch(/chunk 1 of entry 0 arrived twice/);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL', [], true);
    });

    it('DATA for a file index that was not offered → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('index.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 1, chunk: 0, data: [chunk(0)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/data for entry 1, which was not asked for/);
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
      await expectCleanAndServing('E_CHECKSUM', [], true);
    });

    it('a DATA frame of another session → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('session.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] }, SESSION + 1n);
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('every chunk right but END with a wrong digest → VERDICT failed, E_HASH_MISMATCH (501), no file', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('mismatch.bin', content.length, CHUNK);
      for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      const real = await digestOf('xxh128', content);
      const wrong = Buffer.from(real);
      wrong[0]! ^= 0xff;
      s.send({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest: wrong, abandoned: false });
      const verdicts = await s.verdicts();
      expectOnlyFailed(verdicts, 501);
      expect(verdicts[0]).toMatchObject({ hash: 'xxh128' });
      // The receiver reports the digest of what it actually received.
      expect(verdicts[0]!.digest.equals(real)).toBe(true);
      await expectEntriesFailedCleanAndServing([[0, 'E_HASH_MISMATCH']]);
    });

    it('END with another hash algorithm than offered → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('algo.bin', content.length, CHUNK);
      for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      s.send({ type: 'end', index: 0, size: content.length, hash: 'sha256', digest: await digestOf('sha256', content), abandoned: false });
      expect(await s.next()).toMatchObject({ type: 'error', code: 900 });
      await expectCleanAndServing('E_PROTOCOL', [], true);
    });

    it('END twice → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('end2.bin', content.length, CHUNK);
      const digest = await digestOf('xxh128', content);
      s.send({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest, abandoned: false });
      s.send({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest, abandoned: false });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/END for entry 0 arrived twice/);
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('END with a size other than the offered one → ERROR E_PROTOCOL (900)', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('size.bin', content.length, CHUNK);
      for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      s.send({ type: 'end', index: 0, size: content.length - 1, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toContain(`END says ${content.length - 1} bytes for entry 0, the offer said ${content.length}`);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL', [], true);
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
      await expectCleanAndStillServing([], true);
    });

    it('a sender that just disconnects mid-transfer: no file, no .part', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('dropped.bin', content.length, CHUNK);
      s.send({ type: 'data', index: 0, chunk: 0, data: [chunk(0)] });
      s.socket.end();
      await s.closed;
      await expectCleanAndServing('E_CONNECTION_LOST', [], true);
    });

    it('chunks in reverse order with END first still commit the exact bytes', async () => {
      const s = await FakeSender.connect(port);
      await s.offerAccepted('reverse.bin', content.length, CHUNK, 'sha256');
      const digest = await digestOf('sha256', content);
      s.send({ type: 'end', index: 0, size: content.length, hash: 'sha256', digest, abandoned: false });
      for (let i = 3; i >= 0; i--) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      const verdicts = await s.verdicts();
      expect(verdicts).toMatchObject([
        { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'sha256', path: 'reverse.bin' },
        { type: 'verdict', index: WHOLE_TRANSFER, status: 'committed', code: 0 },
      ]);
      expect(verdicts[0]!.digest.equals(digest)).toBe(true);
      const done = await events.done.next();
      expect(done.path).toBe(path.join(target, 'reverse.bin'));
      expect((await fs.readFile(done.path!)).equals(content)).toBe(true);
      expect((await fs.stat(done.path!)).mode & 0o777).toBe(0o644);
      expect(await visibleTree()).toEqual(['reverse.bin']);
      expect(await partialFiles()).toEqual([]);
    });
  });

  it('an offer announcing 4 billion entries with more frames to follow → REFUSE E_LIMIT (604) at its first frame', async () => {
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
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 604, index: WHOLE_TRANSFER });
    expect((reply as { message: string }).message).toContain('the offer has 4294967295 entries; this receiver takes at most 1000000');
    await s.closed;
    await expectCleanAndServing('E_LIMIT');
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
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 900 });
    expect((reply as { message: string }).message).toMatch(/offer total 99 bytes does not match the sum of its sizes, 100/);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('a connection that closes without a word is reported and does not disturb the next one', async () => {
    const s = await FakeSender.connect(port);
    s.socket.end();
    await s.closed;
    await expectCleanAndServing('E_CONNECTION_LOST');
  });

  it('every wire code checked here matches ERROR_CODES', () => {
    expect([wire('E_BAD_NAME'), wire('E_EXISTS'), wire('E_UNSUPPORTED'), wire('E_LIMIT'), wire('E_NO_ROOM')]).toEqual([602, 601, 603, 604, 605]);
    expect([wire('E_PROTOCOL'), wire('E_VERSION'), wire('E_CHECKSUM'), wire('E_HASH_MISMATCH'), wire('E_INTERRUPTED')]).toEqual([900, 901, 500, 501, 13000]);
    expect([wire('E_BUSY'), wire('E_SOURCE_CHANGED')]).toEqual([401, 1000]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('Receiver with an honest sender', () => {
  it('receives 3 MiB + 17 bytes in 64 KiB chunks exactly, with mode and mtime', async () => {
    const content = seededBytes(3 * 1024 * 1024 + 17, 2024);
    const result = await honestTransfer('three-mib.bin', content, { chunkSize: 65536 });
    expect(result.bytes).toBe(3 * 1024 * 1024 + 17);
    expect(await visibleTree()).toEqual(['three-mib.bin']);
    expect(events.failed.length).toBe(0);
  });

  it('receives a 0-byte file', async () => {
    await honestTransfer('empty', Buffer.alloc(0));
    expect((await fs.stat(path.join(target, 'empty'))).size).toBe(0);
    expect(await visibleTree()).toEqual(['empty']);
  });

  it('receives with sha256, and a unicode name', async () => {
    await honestTransfer('résumé 📄.pdf', seededBytes(70_000, 3), { hash: 'sha256', chunkSize: 4096 });
    expect(await visibleTree()).toEqual(['résumé 📄.pdf']);
  });

  it('receives a file whose name is 255 bytes of multi-byte characters', async () => {
    const name = '€'.repeat(85);
    await honestTransfer(name, seededBytes(2000, 4));
    expect(await visibleTree()).toEqual([name]);
  });

  it('receives a name that starts with U+FEFF intact (not stripped as a byte-order mark)', async () => {
    await honestTransfer('\uFEFFbom.txt', Buffer.from('bom'));
    expect(await visibleTree()).toEqual(['\uFEFFbom.txt']);
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
    expect(err.message).toMatch(/twice\.txt already exists in the target folder/);
    const done = await events.done.next();
    expect(done).toMatchObject({ failed: 1, committed: 0, firstFailure: { code: 'E_EXISTS', name: 'twice.txt' } });
    expect(await fs.readFile(path.join(target, 'twice.txt'), 'utf8')).toBe('first');
    expect(await visibleTree()).toEqual(['twice.txt']);
    expect(await partialFiles()).toEqual([]);
  });
});

describe('Receiver.stop()', () => {
  it('during a transfer: tells the sender E_INTERRUPTED, keeps only resume data, stops listening', async () => {
    const MIB = 1024 * 1024;
    const s = await FakeSender.connect(port);
    await s.offerAccepted('big.bin', 10 * MIB, MIB);
    const info = await events.start.next();
    expect(info).toMatchObject({ name: 'big.bin', bytes: 10 * MIB, hash: 'xxh128', transport: 'tcp' });
    s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(MIB, 8)] });
    expect(await events.progress.next()).toBe(MIB);
    expect(await visibleTree()).toEqual([]);
    expect(await partialFiles()).toEqual([expect.stringMatching(/^[0-9a-f]{32}\.part$/)]);
    expect(receiver.activeSessions).toBe(1);

    await receiver.stop(new SockxferError('E_INTERRUPTED', 'test'));
    expect(await visibleTree()).toEqual([]);
    expectResumeDataOnly(await partialFiles());
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
    expect(await visibleTree()).toEqual(['kept.bin']);
    expect(await partialFiles()).toEqual([]);
  });
});
