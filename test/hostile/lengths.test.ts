/**
 * Issue 5, lengths and counts: a hostile sender (test/transfer/harness.ts, the project's encoder,
 * or hand-built frames for values the encoder refuses) lies about sizes, lengths, chunk indices and
 * counts to an in-process Receiver (127.0.0.1, port 0, target `base/out`). Each test ends with the
 * exact wire code, nothing written outside the target folder, no temporary file left (but resume
 * data where a file's data had begun), and an honest sendFile() committed byte-identical afterwards
 * (expectCleanAndServing in test/transfer/receiver-fixture.ts).
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                                                   | where                                                                                              |
 * |--------------------------------------------------------|----------------------------------------------------------------------------------------------------|
 * | DATA chunk of length 0 (a file)                        | test/transfer/receiver.test.ts: 'wrong chunk length (an empty chunk) → ERROR E_PROTOCOL (900)'      |
 * | DATA chunk one byte over the agreed chunk size         | test/transfer/receiver.test.ts: 'wrong chunk length (a full chunk one byte long) → …'              |
 * | a chunk index past the last chunk                      | test/transfer/receiver.test.ts: 'chunk index past the end → ERROR E_PROTOCOL (900)'                 |
 * | a chunk index far out of range (2^40)                  | test/transfer/receiver.test.ts: 'chunk index far past the end (2^40) → …'                           |
 * | a chunk repeated                                       | test/transfer/receiver.test.ts: 'a chunk twice → ERROR E_PROTOCOL (900)'                            |
 * | stream chunks overlapping the short (last) one         | test/transfer/hostile-offers.test.ts: 'a short chunk that is not the last (…) → ERROR E_PROTOCOL (900)' |
 * | END size other than the offered one                    | test/transfer/receiver.test.ts: 'END with a size other than the offered one → …'                    |
 * | fileCount of 4 billion (fileCount × anything)          | test/transfer/receiver.test.ts: 'an offer announcing 4 billion entries … → REFUSE E_LIMIT (604) …'  |
 * | totalBytes disagreeing with the sizes                  | test/transfer/receiver.test.ts: 'an offer whose total disagrees with the file size → …'              |
 * | a size of 2^50 (more than the disk)                    | test/transfer/hostile-offers.test.ts: 'an offer of 2^50 bytes → REFUSE E_NO_ROOM (605)'             |
 * | 2^53 and 2^63−1 in every u64 field (codec level)       | test/protocol/codec.test.ts: 'an entry size of 2^63-1 is E_PROTOCOL', '2^53 is refused and 2^53-1 accepted …' |
 * | body lengths over the limit (parser level)             | test/protocol/codec.test.ts 'oversized lengths are refused from the header alone'; deframer.test.ts 'refuses a data header claiming 0xFFFFFFFF bytes …' |
 *
 * New here, end to end against the receiver: header-only frames announcing 0xFFFFFFFF bytes or a
 * chunk over the protocol maximum (answered before any body byte is sent); a declared size and
 * a total of 2^63−1; a size of 2^53−1; sizes whose sum passes 2^53; fileCount × the largest chunk
 * size past 2^53; chunk indices at and past 2^53; stream chunk offsets (index × chunk size) that
 * pass 2^53 or --max-size; an empty stream chunk; a chunk overlapping what a resume already holds.
 */
import { describe, expect, it } from 'vitest';
import { FRAME_TYPE, HASH_ALGORITHMS, HEADER_SIZE, MAGIC, MAX_CHUNK_SIZE, PROTOCOL_VERSION, WHOLE_TRANSFER, type OfferEntry } from '../../src/protocol/index.js';
import { WireWriter } from '../../src/protocol/wire.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, MTIME, SESSION, offerEntries, offerOf, rawFrame, sendAll } from '../transfer/harness.js';
import { events, expectCleanAndServing, expectCleanAndStillServing, expectResumeDataOnly, partialFiles, port, restartReceiver, useReceiverFixture } from '../transfer/receiver-fixture.js';

useReceiverFixture();

const CHUNK = 1024;
const TWO_53 = 2 ** 53;

/** A frame header alone: no body, no trailer (what a hostile sender sends to make the receiver wait for, or allocate, the body). */
function headerOnly(type: number, bodyLength: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32BE(MAGIC, 0);
  h.writeUInt8(PROTOCOL_VERSION, 4);
  h.writeUInt8(type, 5);
  h.writeUInt16BE(0, 6);
  h.writeBigUInt64BE(SESSION, 8);
  h.writeUInt32BE(bodyLength, 16);
  return h;
}

/** The big-endian u64 of any bigint below 2^64 (the encoder's u64 stops at 2^53−1). */
function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
}

/** An OFFER body of one file entry, with size and total given as raw u64s. */
function rawOfferBody(size: bigint, total: bigint): Buffer {
  const head = new WireWriter().u32(CHUNK).u8(HASH_ALGORITHMS.xxh128).u32(1).toBuffer();
  const count = new WireWriter().u16(1).u32(0).u8(0).toBuffer();
  const tail = new WireWriter().u32(0o644).u64(MTIME).str16('huge.bin', 255).toBuffer();
  return Buffer.concat([head, u64(total), count, u64(size), tail]);
}

/** The receiver's reply is an ERROR (or REFUSE) with `code` whose message matches `message`; then it hangs up. */
async function expectReply(s: FakeSender, type: 'error' | 'refuse', code: number, message: RegExp): Promise<void> {
  const reply = await s.next();
  expect(reply).toMatchObject({ type, code });
  expect((reply as { message: string }).message).toMatch(message);
  await s.closed;
}

describe('body lengths announced in a header, no body sent', () => {
  it.each([
    ['HELLO', FRAME_TYPE.hello, 0xffffffff, false, /hello frame of 4294967295 bytes is over the limit of 2048/],
    ['OFFER', FRAME_TYPE.offer, 0xffffffff, true, /offer frame of 4294967295 bytes is over the limit of 61440/],
    ['DATA', FRAME_TYPE.data, 0xffffffff, true, /data frame of 4294967295 bytes is over the limit of 16777228/],
    ['DATA with a chunk one byte over the protocol maximum (16 MiB + 1)', FRAME_TYPE.data, 12 + MAX_CHUNK_SIZE + 1, true, /data frame of 16777229 bytes is over the limit of 16777228/],
  ])('%s announcing %i bytes → ERROR E_PROTOCOL (900) from the header alone', async (_what, type, length, afterHello, message) => {
    const s = await FakeSender.connect(port);
    if (afterHello) await s.hello();
    s.sendRaw(headerOnly(type, length));
    // Answered without waiting for the body: the socket stays open on this side, sending nothing more.
    await expectReply(s, 'error', 900, message);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('DATA announcing 0xFFFFFFFF bytes in the middle of a file, after real chunks → ERROR E_PROTOCOL (900), the chunks kept for a resume', async () => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('mid.bin', 4 * CHUNK, CHUNK);
    s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(CHUNK, 1)] });
    s.sendRaw(headerOnly(FRAME_TYPE.data, 0xffffffff));
    await expectReply(s, 'error', 900, /data frame of 4294967295 bytes is over the limit/);
    await expectCleanAndServing('E_PROTOCOL', [], true);
  });
});

describe('declared sizes and totals', () => {
  it.each([
    ['a file size of 2^63−1', 2n ** 63n - 1n, 10n, /malformed frame: file size is larger than 2\^53-1/],
    ['a total of 2^63−1', 10n, 2n ** 63n - 1n, /malformed frame: total bytes is larger than 2\^53-1/],
    ['a file size of 2^53 (the first value a JS number cannot hold exactly)', 2n ** 53n, 10n, /malformed frame: file size is larger than 2\^53-1/],
  ])('%s → ERROR E_PROTOCOL (900), refused at decoding, not rounded', async (_what, size, total, message) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(rawFrame(FRAME_TYPE.offer, rawOfferBody(size, total)));
    await expectReply(s, 'error', 900, message);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('a file size of 2^53−1 (the largest the wire carries) → REFUSE E_NO_ROOM (605), nothing created', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerOf('huge.bin', TWO_53 - 1, CHUNK));
    await expectReply(s, 'refuse', 605, new RegExp(`the offer needs ${TWO_53 - 1} bytes, but the target folder has \\d+ bytes free`));
    await expectCleanAndServing('E_NO_ROOM');
  });

  it('a file size of 2^53−1 under --max-size → that entry refused E_LIMIT (604), the honest one beside it committed', async () => {
    await restartReceiver({ maxSize: 1024 * 1024 });
    const s = await FakeSender.connect(port);
    await s.hello();
    // The neighbour is empty: any byte more and the total would pass 2^53−1 (see below).
    const accepts = await s.offer(offerEntries([{ name: 'huge.bin', size: TWO_53 - 1 }, { name: 'ok.bin', size: 0 }], CHUNK));
    expect(accepts[0]).toMatchObject({ index: 0, action: 'refuse', code: 604 });
    expect(accepts[0]!.message).toMatch(/over the size limit: 9007199254740991 bytes, this receiver takes files of at most 1048576 bytes/);
    expect(accepts[1]).toEqual(sendAll(1));
    await s.sendEntry(1, Buffer.alloc(0), CHUNK);
    expect((await s.verdicts()).map((v) => [v.index, v.status, v.code])).toEqual(
      expect.arrayContaining([
        [0, 'failed', 604],
        [1, 'committed', 0],
        [WHOLE_TRANSFER, 'committed', 0],
      ]),
    );
    const done = await events.done.next();
    expect(done).toMatchObject({ committed: 1, failed: 1 });
    expect(done.entries[0]).toMatchObject({ result: 'failed', code: 'E_LIMIT' });
    await expectCleanAndStillServing(['ok.bin']);
  });

  it.each([
    ['2 × (2^53−1)', [TWO_53 - 1, TWO_53 - 1]],
    ['(2^53−1) + 1', [TWO_53 - 1, 1]],
    ['(2^53−1) + 2 (a sum that rounds in floating point)', [TWO_53 - 1, 2]],
    ['3 × 2^52', [2 ** 52, 2 ** 52, 2 ** 52]],
  ])('sizes whose sum passes 2^53 (%s), the total claimed 2^53−1 → ERROR E_PROTOCOL (900)', async (_what, sizes) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const entries: OfferEntry[] = sizes.map((size, index) => ({ index, kind: 'file', name: `f${index}`, size, mode: 0o644, mtimeMs: MTIME }));
    s.send({ type: 'offer', chunkSize: CHUNK, hash: 'xxh128', fileCount: entries.length, totalBytes: TWO_53 - 1, more: false, entries });
    await expectReply(s, 'error', 900, /offer total 9007199254740991 bytes does not match the sum of its sizes/);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('fileCount 2^32−1 × the largest chunk size (16 MiB): a product past 2^53 → REFUSE E_LIMIT (604) at the first frame', async () => {
    expect(0xffffffff * MAX_CHUNK_SIZE).toBeGreaterThan(TWO_53);
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send({ ...offerOf('one.bin', 10, MAX_CHUNK_SIZE), fileCount: 0xffffffff, more: true });
    await expectReply(s, 'refuse', 604, /the offer has 4294967295 entries; this receiver takes at most 1000000 per transfer/);
    await expectCleanAndServing('E_LIMIT');
  });
});

describe('chunk indices', () => {
  it.each([
    ['2^53−1 (the largest the wire carries) for a file of 4 chunks', TWO_53 - 1, /chunk 9007199254740991 is past the end of entry 0 \(4 chunks\)/],
    ['2^32 for a file of 4 chunks', 2 ** 32, /chunk 4294967296 is past the end of entry 0 \(4 chunks\)/],
  ])('chunk index %s → ERROR E_PROTOCOL (900)', async (_what, chunk, message) => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('idx.bin', 4 * CHUNK, CHUNK);
    s.send({ type: 'data', index: 0, chunk, data: [seededBytes(CHUNK, 3)] });
    await expectReply(s, 'error', 900, message);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it.each([
    ['2^53', 2n ** 53n],
    ['2^64−1', 2n ** 64n - 1n],
  ])('chunk index %s (hand-built: the encoder refuses it) → ERROR E_PROTOCOL (900), refused at decoding', async (_what, chunk) => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('idx.bin', 4 * CHUNK, CHUNK);
    const body = Buffer.concat([new WireWriter().u32(0).toBuffer(), u64(chunk), seededBytes(CHUNK, 4)]);
    s.sendRaw(rawFrame(FRAME_TYPE.data, body));
    await expectReply(s, 'error', 900, /malformed frame: chunk index is larger than 2\^53-1/);
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('DATA for entry index 2^32−1 (the "whole transfer" index) → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('idx.bin', 4 * CHUNK, CHUNK);
    s.send({ type: 'data', index: WHOLE_TRANSFER, chunk: 0, data: [seededBytes(CHUNK, 5)] });
    await expectReply(s, 'error', 900, /data for entry 4294967295, which was not asked for/);
    await expectCleanAndServing('E_PROTOCOL');
  });

  describe('a stream (no size known up front): where index × chunk size lands', () => {
    async function offerStream(): Promise<FakeSender> {
      const s = await FakeSender.connect(port);
      await s.hello();
      expect(await s.offer(offerEntries([{ name: 'pipe.bin', kind: 'stream' }], CHUNK))).toEqual([sendAll(0)]);
      return s;
    }

    it.each([
      ['2^43 − 1: its end is exactly 2^53', 2 ** 43 - 1],
      ['2^43: its offset is 2^53', 2 ** 43],
      ['2^53 − 1: its offset is about 2^63', TWO_53 - 1],
    ])('chunk index %s → ERROR E_LIMIT (604) (past the largest offset a number holds exactly), nothing written', async (_what, chunk) => {
      const s = await offerStream();
      s.send({ type: 'data', index: 0, chunk, data: [seededBytes(CHUNK, 6)] });
      await expectReply(s, 'error', 604, /pipe\.bin grew past 9007199254740991 bytes, the largest this receiver takes/);
      await expectCleanAndServing('E_LIMIT');
    });

    it('a chunk whose end passes --max-size → ERROR E_LIMIT (604)', async () => {
      await restartReceiver({ maxSize: 1024 * 1024 });
      const s = await offerStream();
      s.send({ type: 'data', index: 0, chunk: 1024, data: [seededBytes(CHUNK, 7)] });
      await expectReply(s, 'error', 604, /pipe\.bin grew past 1048576 bytes, the largest this receiver takes/);
      await expectCleanAndServing('E_LIMIT');
    });

    it('an empty stream chunk → ERROR E_PROTOCOL (900)', async () => {
      const s = await offerStream();
      s.send({ type: 'data', index: 0, chunk: 0, data: [Buffer.alloc(0)] });
      await expectReply(s, 'error', 900, /stream chunk 0 has 0 bytes \(chunk size 1024\)/);
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('the same stream chunk twice → ERROR E_PROTOCOL (900)', async () => {
      const s = await offerStream();
      s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(CHUNK, 8)] });
      s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(CHUNK, 8)] });
      await expectReply(s, 'error', 900, /chunk 0 of entry 0 arrived twice/);
      await expectCleanAndServing('E_PROTOCOL');
    });
  });

  it('a chunk overlapping what a resume already holds → ERROR E_PROTOCOL (900); the held data kept, untouched', async () => {
    const content = seededBytes(4 * CHUNK, 9);
    const first = await FakeSender.connect(port);
    await first.offerAccepted('resumed.bin', content.length, CHUNK);
    for (const i of [0, 1]) first.send({ type: 'data', index: 0, chunk: i, data: [content.subarray(i * CHUNK, (i + 1) * CHUNK)] });
    first.socket.end();
    await first.closed;
    expect((await events.failed.next()).error.code).toBe('E_CONNECTION_LOST');
    const kept = await partialFiles();
    expectResumeDataOnly(kept);
    expect(kept).toHaveLength(2);

    const second = await FakeSender.connect(port);
    await second.hello();
    expect(await second.offer(offerOf('resumed.bin', content.length, CHUNK))).toEqual([{ ...sendAll(0), have: [[0, 2]] }]);
    // Chunk 1 is held: sending it again (with other bytes) would overwrite durable data.
    second.send({ type: 'data', index: 0, chunk: 1, data: [seededBytes(CHUNK, 10)] });
    await expectReply(second, 'error', 900, /chunk 1 of entry 0 arrived twice/);
    await expectCleanAndServing('E_PROTOCOL', [], true);
    expect(await partialFiles()).toEqual(kept);
  });
});
