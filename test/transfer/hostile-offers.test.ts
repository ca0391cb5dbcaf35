/**
 * The Receiver against hostile version-2 offers of many files, folders and streams, from a fake
 * sender (harness.ts) on 127.0.0.1 port 0. For each: the exact ACCEPT entry, REFUSE or ERROR
 * code, the neighbours of a refused entry still committed, nothing written outside the target
 * folder, no temporary file left, and the receiver still serves an honest sender afterwards.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/errors.js';
import { MAX_MESSAGE_BYTES, MAX_PATH_BYTES, MAX_PATH_DEPTH, WHOLE_TRANSFER, type AcceptEntry, type VerdictFrame } from '../../src/protocol/index.js';
import { PARTIAL_DIR } from '../../src/transfer/journal.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, digestOf, offerEntries, offerOf, sendAll, type EntrySpec } from './harness.js';
import {
  elsewhere,
  events,
  expectCleanAndServing,
  expectCleanAndStillServing,
  expectEntriesFailedCleanAndServing,
  expectOnlyFailed,
  expectRefused,
  partialFiles,
  port,
  restartReceiver,
  target,
  useReceiverFixture,
} from './receiver-fixture.js';

useReceiverFixture();

describe('Receiver against hostile version-2 offers of many entries', () => {
  const CHUNK = 1024;
  const contentOf = (spec: EntrySpec, index: number) => seededBytes(spec.size ?? 0, 1000 + index);

  /**
   * HELLO and an OFFER of `specs`; every file accepted with 'send' is then sent honestly.
   * Returns the ACCEPT entries and every VERDICT up to the whole transfer's.
   */
  async function play(specs: EntrySpec[]): Promise<{ accepts: AcceptEntry[]; verdicts: VerdictFrame[] }> {
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerEntries(specs, CHUNK));
    expect(accepts.map((a) => a.index)).toEqual(specs.map((_s, i) => i));
    for (const a of accepts) {
      const spec = specs[a.index]!;
      if (a.action === 'send' && (spec.kind ?? 'file') !== 'directory') await s.sendEntry(a.index, contentOf(spec, a.index), CHUNK);
    }
    return { accepts, verdicts: await s.verdicts() };
  }

  /** The VERDICT of entry `index` (exactly one), and the whole transfer's last. */
  function verdictOf(verdicts: VerdictFrame[], index: number): VerdictFrame {
    const found = verdicts.filter((v) => v.index === index);
    expect(found).toHaveLength(1);
    expect(verdicts[verdicts.length - 1]).toMatchObject({ index: WHOLE_TRANSFER, status: 'committed', code: 0 });
    return found[0]!;
  }

  const escapeAbsolute = `/sockxfer-test-escape-${process.pid}.txt`;

  it.each([
    ['".." that would leave the folder', '../escaped.txt', /"\.\." is not a file name/],
    ['".." after a folder', 'sub/../../escaped.txt', /"\.\." is not a file name/],
    ['a leading "/"', escapeAbsolute, /the name is empty/],
    ['an empty component "a//b"', 'a//b', /the name is empty/],
    ['a trailing "/"', 'a/', /the name is empty/],
    ['a "." component', './a', /"\." is not a file name/],
    ['a backslash', 'a\\..\\..\\escaped.txt', /path separator/],
    ['a control character', 'dir/\u0007bell', /control character/],
    [`the receiver's own ${PARTIAL_DIR}`, `${PARTIAL_DIR}/0123456789abcdef0123456789abcdef.journal`, /is where this receiver keeps files in progress/],
    [`${MAX_PATH_DEPTH + 1} levels`, Array<string>(MAX_PATH_DEPTH + 1).fill('d').join('/'), new RegExp(`${MAX_PATH_DEPTH + 1} levels deep, the limit is ${MAX_PATH_DEPTH}`)],
    [`${MAX_PATH_BYTES + 1} bytes`, Array<string>(17).fill('x'.repeat(240)).join('/'), new RegExp(`${MAX_PATH_BYTES + 1} bytes long, the limit is ${MAX_PATH_BYTES}`)],
  ])('a path with %s → that entry refused E_BAD_NAME (602), the next one committed', async (_what, name, message) => {
    const { accepts, verdicts } = await play([{ name, size: 100 }, { name: 'ok.txt', size: 10 }]);
    // The reason comes before the (shortened) name, so even the ACCEPT's 200 bytes say why.
    expectRefused(accepts[0], 0, 602, /^refused a name: /);
    expect(accepts[0]!.message).toMatch(message);
    expect(accepts[1]).toEqual(sendAll(1));
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'failed', code: 602, path: '' });
    expect(verdictOf(verdicts, 0).message).toMatch(message);
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', code: 0, path: 'ok.txt' });
    await expect(fs.access(escapeAbsolute)).rejects.toThrow();
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']], ['ok.txt']);
    expect((await fs.readFile(path.join(target, 'ok.txt'))).equals(contentOf({ name: 'ok.txt', size: 10 }, 1))).toBe(true);
  });

  it('a refused name of many multi-byte characters still gets its VERDICT, its message within the frame limit', async () => {
    const name = Array<string>(17).fill('é'.repeat(120)).join('/');
    const { accepts, verdicts } = await play([{ name, size: 100 }, { name: 'ok.txt', size: 10 }]);
    expectRefused(accepts[0], 0, 602, /^refused a name: .*"é/);
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', path: 'ok.txt' });
    const verdict = verdictOf(verdicts, 0);
    expect(verdict).toMatchObject({ status: 'failed', code: 602, path: '' });
    expect(Buffer.byteLength(verdict.message)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']], ['ok.txt']);
  });

  it(`a path exactly ${MAX_PATH_DEPTH} levels deep is accepted`, async () => {
    const name = [...Array<string>(MAX_PATH_DEPTH - 1).fill('d'), 'deep.txt'].join('/');
    const { accepts, verdicts } = await play([{ name, size: 10 }]);
    expect(accepts).toEqual([sendAll(0)]);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: name });
    expect((await fs.readFile(path.join(target, ...name.split('/')))).equals(contentOf({ name, size: 10 }, 0))).toBe(true);
  });

  it('a file in folders that were not offered: the folders are created, inside the target folder', async () => {
    const { accepts, verdicts } = await play([{ name: 'a/b/c.txt', size: 10 }]);
    expect(accepts).toEqual([sendAll(0)]);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: 'a/b/c.txt' });
    expect((await events.done.next()).committed).toBe(1);
    await expectCleanAndStillServing(['a', 'a/b', 'a/b/c.txt']);
  });

  it.each([
    ['a folder', 'directory'],
    ['a stream', 'stream'],
  ] as const)('%s offered with a size → ERROR E_PROTOCOL (900)', async (_what, kind) => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerEntries([{ name: 'sized', kind, size: 10 }]));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 900 });
    expect((reply as { message: string }).message).toContain(`offer entry 0 is a ${kind} with a size`);
    await s.closed;
    await expectCleanAndServing('E_PROTOCOL');
  });

  it('the same name twice in one offer → the second refused E_BAD_NAME (602), the first committed', async () => {
    const { accepts, verdicts } = await play([
      { name: 'dup.txt', size: 10 },
      { name: 'dup.txt', size: 20 },
    ]);
    expect(accepts[0]).toEqual(sendAll(0));
    expectRefused(accepts[1], 1, 602, /^offered twice: "dup\.txt"/);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: 'dup.txt' });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'failed', code: 602 });
    await expectEntriesFailedCleanAndServing([[1, 'E_BAD_NAME']], ['dup.txt']);
    expect((await fs.readFile(path.join(target, 'dup.txt'))).equals(contentOf({ name: 'dup.txt', size: 10 }, 0))).toBe(true);
  });

  it('"a" as a file and "a/b" in one offer → "a/b" refused E_BAD_NAME (602), "a" stays a file', async () => {
    const { accepts, verdicts } = await play([
      { name: 'a', size: 10 },
      { name: 'a/b', size: 5 },
    ]);
    expect(accepts[0]).toEqual(sendAll(0));
    expectRefused(accepts[1], 1, 602, /^inside an offered file: "a\/b" would be inside "a"/);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: 'a' });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'failed', code: 602 });
    await expectEntriesFailedCleanAndServing([[1, 'E_BAD_NAME']], ['a']);
    expect((await fs.lstat(path.join(target, 'a'))).isFile()).toBe(true);
  });

  it.each([
    ['a file "lnk/x"', [{ name: 'lnk/x', size: 10 }], [/lnk is a symbolic link in the target folder/]],
    [
      'a folder "lnk" and a file "lnk/x"',
      [{ name: 'lnk', kind: 'directory' as const }, { name: 'lnk/x', size: 10 }],
      [/lnk is a symbolic link in the target folder/, /^inside a refused folder: "lnk\/x" is inside "lnk"/],
    ],
  ])('an existing link out/lnk → another folder, and %s → refused E_BAD_NAME (602), nothing written there', async (_what, bad, messages) => {
    await fs.symlink(elsewhere, path.join(target, 'lnk'));
    const { accepts, verdicts } = await play([...bad, { name: 'ok.txt', size: 10 }]);
    messages.forEach((m, i) => {
      expectRefused(accepts[i], i, 602, m);
      expect(verdictOf(verdicts, i)).toMatchObject({ status: 'failed', code: 602 });
    });
    expect(verdictOf(verdicts, bad.length)).toMatchObject({ status: 'committed', path: 'ok.txt' });
    await expectEntriesFailedCleanAndServing(
      messages.map((_m, i): [number, ErrorCode] => [i, 'E_BAD_NAME']),
      ['lnk', 'ok.txt'],
    );
    expect((await fs.lstat(path.join(target, 'lnk'))).isSymbolicLink()).toBe(true);
  });

  it('fileCount above maxFiles → REFUSE E_LIMIT (604) before any further OFFER frame is read', async () => {
    await restartReceiver({ maxFiles: 3 });
    const s = await FakeSender.connect(port);
    await s.hello();
    const offer = offerEntries([{ name: 'a', size: 1 }, { name: 'b', size: 1 }, { name: 'c', size: 1 }, { name: 'd', size: 1 }]);
    // Only the first frame of a two-frame offer: the answer cannot have waited for the second.
    s.send({ ...offer, entries: offer.entries.slice(0, 2), more: true });
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 604, index: WHOLE_TRANSFER });
    expect((reply as { message: string }).message).toContain('the offer has 4 entries; this receiver takes at most 3 per transfer');
    await s.closed;
    await expectCleanAndServing('E_LIMIT');
  });

  it('exactly maxFiles entries, over two OFFER frames, are accepted', async () => {
    await restartReceiver({ maxFiles: 3 });
    const s = await FakeSender.connect(port);
    await s.hello();
    const offer = offerEntries([{ name: 'f', kind: 'directory' }, { name: 'f/a', size: 10 }, { name: 'f/b', size: 20 }]);
    s.send({ ...offer, entries: offer.entries.slice(0, 2), more: true });
    const accepts = await s.offer({ ...offer, entries: offer.entries.slice(2), more: false });
    expect(accepts).toEqual([sendAll(0), sendAll(1), sendAll(2)]);
    await s.sendEntry(1, seededBytes(10, 1), CHUNK);
    await s.sendEntry(2, seededBytes(20, 2), CHUNK);
    const verdicts = await s.verdicts();
    expect(verdicts.map((v) => [v.index, v.status])).toEqual(
      expect.arrayContaining([
        [0, 'committed'],
        [1, 'committed'],
        [2, 'committed'],
      ]),
    );
    expect(verdicts).toHaveLength(4);
    const done = await events.done.next();
    expect(done).toMatchObject({ committed: 2, failed: 0 });
    await expectCleanAndStillServing(['f', 'f/a', 'f/b']);
  });

  it('a file over maxSize → that entry refused E_LIMIT (604), the others committed', async () => {
    await restartReceiver({ maxSize: 10_000 });
    const { accepts, verdicts } = await play([
      { name: 'big.bin', size: 10_001 },
      { name: 'small.bin', size: 10_000 },
    ]);
    expectRefused(accepts[0], 0, 604, /^over the size limit: 10001 bytes, this receiver takes files of at most 10000 bytes: "big\.bin"/);
    expect(accepts[1]).toEqual(sendAll(1));
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'failed', code: 604 });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', path: 'small.bin' });
    await expectEntriesFailedCleanAndServing([[0, 'E_LIMIT']], ['small.bin']);
  });

  it('an offer of 2^50 bytes → REFUSE E_NO_ROOM (605)', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerEntries([{ name: 'small.bin', size: 10 }, { name: 'huge.bin', size: 2 ** 50 }]));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'refuse', code: 605, index: WHOLE_TRANSFER });
    expect((reply as { message: string }).message).toMatch(new RegExp(`the offer needs ${2 ** 50 + 10} bytes, but the target folder has \\d+ bytes free`));
    await s.closed;
    await expectCleanAndServing('E_NO_ROOM');
  });

  it('an offer of 2^50 bytes inside new folders → REFUSE E_NO_ROOM (605), and the folders are not left behind', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    s.send(offerEntries([{ name: 'd', kind: 'directory' }, { name: 'd/e', kind: 'directory' }, { name: 'd/e/huge.bin', size: 2 ** 50 }, { name: 'f/g/implied.bin', size: 1 }]));
    expect(await s.next()).toMatchObject({ type: 'refuse', code: 605, index: WHOLE_TRANSFER });
    await s.closed;
    await expectCleanAndServing('E_NO_ROOM');
  });

  it('DATA for an entry that was refused → ERROR E_PROTOCOL (900)', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerEntries([{ name: '../bad', size: 10 }, { name: 'ok.txt', size: 10 }]));
    expect(accepts[0]).toMatchObject({ action: 'refuse', code: 602 });
    expect(await s.next()).toMatchObject({ type: 'verdict', index: 0, status: 'failed', code: 602 });
    s.send({ type: 'data', index: 0, chunk: 0, data: [Buffer.alloc(10, 1)] });
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 900 });
    expect((reply as { message: string }).message).toMatch(/data for entry 0, which was not asked for/);
    await s.closed;
    await expectCleanAndServing('E_PROTOCOL');
  });

  describe('an existing file of the offered size (policy refuse: check)', () => {
    const held = seededBytes(3000, 5);

    async function offerHeld(): Promise<FakeSender> {
      await fs.writeFile(path.join(target, 'same.bin'), held);
      const s = await FakeSender.connect(port);
      await s.hello();
      const accepts = await s.offer(offerOf('same.bin', held.length, CHUNK));
      expect(accepts).toEqual([{ index: 0, action: 'check', code: 601, message: '', digest: await digestOf('xxh128', held), have: [] }]);
      return s;
    }

    it('DATA for it → ERROR E_PROTOCOL (900), the file untouched', async () => {
      const s = await offerHeld();
      s.send({ type: 'data', index: 0, chunk: 0, data: [Buffer.alloc(CHUNK, 7)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/data for entry 0, which was only to be checked/);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL', ['same.bin']);
      expect((await fs.readFile(path.join(target, 'same.bin'))).equals(held)).toBe(true);
    });

    it('END only, same digest → VERDICT up-to-date', async () => {
      const s = await offerHeld();
      const digest = await digestOf('xxh128', held);
      s.send({ type: 'end', index: 0, size: held.length, hash: 'xxh128', digest, abandoned: false });
      const verdicts = await s.verdicts();
      expect(verdicts).toMatchObject([
        { index: 0, status: 'up-to-date', code: 0, path: 'same.bin' },
        { index: WHOLE_TRANSFER, status: 'committed' },
      ]);
      expect(verdicts[0]!.digest.equals(digest)).toBe(true);
      const done = await events.done.next();
      expect(done).toMatchObject({ upToDate: 1, committed: 0, failed: 0 });
      await expectCleanAndStillServing(['same.bin']);
      expect((await fs.readFile(path.join(target, 'same.bin'))).equals(held)).toBe(true);
    });

    it('END only, another digest → VERDICT failed E_EXISTS (601), the file untouched', async () => {
      // A receiver that waited for data here would hang until its idle timeout: keep that short.
      await restartReceiver({ timeoutMs: 2000 });
      const s = await offerHeld();
      s.send({ type: 'end', index: 0, size: held.length, hash: 'xxh128', digest: await digestOf('xxh128', seededBytes(3000, 6)), abandoned: false });
      const verdicts = await s.verdicts();
      expectOnlyFailed(verdicts, 601);
      expect(verdicts[0]!.message).toMatch(/same\.bin differs from the file in place; not replaced/);
      await expectEntriesFailedCleanAndServing([[0, 'E_EXISTS']], ['same.bin']);
      expect((await fs.readFile(path.join(target, 'same.bin'))).equals(held)).toBe(true);
    });
  });

  it('an END flagged abandoned → VERDICT failed E_SOURCE_CHANGED (1000), its .part removed, the transfer still ends', async () => {
    const BIG = 256 * 1024;
    const s = await FakeSender.connect(port);
    await s.hello();
    const accepts = await s.offer(offerEntries([{ name: 'gone.bin', size: 3 * BIG }, { name: 'ok.bin', size: 10 }], BIG));
    expect(accepts).toEqual([sendAll(0), sendAll(1)]);
    s.send({ type: 'data', index: 0, chunk: 0, data: [seededBytes(BIG, 1)] });
    expect(await events.progress.next()).toBe(BIG);
    expect(await partialFiles()).toEqual([expect.stringMatching(/^[0-9a-f]{32}\.part$/)]);
    s.send({ type: 'end', index: 0, size: 3 * BIG, hash: 'xxh128', digest: Buffer.alloc(0), abandoned: true });
    await s.sendEntry(1, seededBytes(10, 2), BIG);
    const verdicts = await s.verdicts();
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'failed', code: 1000, path: '' });
    expect(verdictOf(verdicts, 0).message).toMatch(/gave gone\.bin up/);
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', path: 'ok.bin' });
    await expectEntriesFailedCleanAndServing([[0, 'E_SOURCE_CHANGED']], ['ok.bin']);
  });

  describe('a stream entry', () => {
    // Two full chunks and a short last one.
    const content = seededBytes(2 * CHUNK + 452, 11);
    const chunk = (i: number) => content.subarray(i * CHUNK, (i + 1) * CHUNK);

    async function offerStream(): Promise<FakeSender> {
      const s = await FakeSender.connect(port);
      await s.hello();
      expect(await s.offer(offerEntries([{ name: 'log.txt', kind: 'stream' }], CHUNK))).toEqual([sendAll(0)]);
      return s;
    }

    it('chunks out of order, the short last one first, then END with the right size → committed, byte for byte', async () => {
      const s = await offerStream();
      for (const i of [2, 0, 1]) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      const digest = await digestOf('xxh128', content);
      s.send({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest, abandoned: false });
      const verdicts = await s.verdicts();
      expect(verdicts).toMatchObject([
        { index: 0, status: 'committed', code: 0, path: 'log.txt' },
        { index: WHOLE_TRANSFER, status: 'committed' },
      ]);
      expect(verdicts[0]!.digest.equals(digest)).toBe(true);
      const done = await events.done.next();
      expect(done.entries[0]).toMatchObject({ kind: 'stream', result: 'committed', bytes: content.length });
      expect((await fs.readFile(path.join(target, 'log.txt'))).equals(content)).toBe(true);
      await expectCleanAndStillServing(['log.txt']);
    });

    it.each([
      ['then a full one after it', [[0, 500], [1, CHUNK]], null, /stream chunk 1 comes after the short \(last\) chunk 0/],
      ['after a later full one', [[1, CHUNK], [0, 500]], null, /short stream chunk 0 is not the last/],
      ['and another short one', [[0, 500], [1, 300]], null, /stream chunks 0 and 1 are both short/],
      ['and an END that says there is more', [[0, 500]], 2500, /END says 2500 bytes, but chunk 0 had 500/],
    ] as const)('a short chunk that is not the last (%s) → ERROR E_PROTOCOL (900)', async (_what, sends, endSize, message) => {
      const s = await offerStream();
      for (const [i, length] of sends) s.send({ type: 'data', index: 0, chunk: i, data: [seededBytes(length, i)] });
      if (endSize !== null) s.send({ type: 'end', index: 0, size: endSize, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(message);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL');
    });

    it.each([
      ['that disagrees with the short last chunk', [0, 1, 2], 2 * CHUNK + 52, /END says 2100 bytes, but chunk 2 had 452/],
      ['shorter than the chunks that came', [0, 1, 2], 2000, /END says 2000 bytes, but chunk 2 arrived/],
      ['shorter than two full chunks', [0, 1], CHUNK, /END says 1024 bytes, but chunk 1 arrived/],
      ['one byte longer than the chunks', [0, 1, 2], content.length + 1, /END says 2501 bytes, but chunk 2 had 452/],
    ] as const)('END with a size %s → ERROR E_PROTOCOL (900)', async (_what, chunks, size, message) => {
      const s = await offerStream();
      for (const i of chunks) s.send({ type: 'data', index: 0, chunk: i, data: [chunk(i)] });
      s.send({ type: 'end', index: 0, size, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(message);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL');
    });

    it('END first, then a chunk that does not fit its size → ERROR E_PROTOCOL (900)', async () => {
      const s = await offerStream();
      s.send({ type: 'end', index: 0, size: content.length, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
      s.send({ type: 'data', index: 0, chunk: 2, data: [content.subarray(2 * CHUNK, 2 * CHUNK + 100)] });
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'error', code: 900 });
      expect((reply as { message: string }).message).toMatch(/stream chunk 2 \(100 bytes\) does not fit the END's size 2500/);
      await s.closed;
      await expectCleanAndServing('E_PROTOCOL');
    });
  });

  it('maxSessions 1: a second connection while the first is open → ERROR E_BUSY (401); the first carries on', async () => {
    await restartReceiver({ maxSessions: 1 });
    const first = await FakeSender.connect(port);
    await first.hello();
    const second = await FakeSender.connect(port);
    const reply = await second.next();
    expect(reply).toMatchObject({ type: 'error', code: 401 });
    expect((reply as { message: string }).message).toContain('this receiver serves 1 transfers at once already');
    await second.closed;
    const busy = await events.failed.next();
    expect(busy).toMatchObject({ info: null });
    expect(busy.error.code).toBe('E_BUSY');

    const content = seededBytes(3000, 12);
    expect(await first.offer(offerOf('first.bin', content.length, CHUNK))).toEqual([sendAll(0)]);
    await first.sendEntry(0, content, CHUNK);
    expect(await first.verdicts()).toMatchObject([
      { index: 0, status: 'committed', path: 'first.bin' },
      { index: WHOLE_TRANSFER, status: 'committed' },
    ]);
    expect(await events.done.next()).toMatchObject({ name: 'first.bin', committed: 1 });
    await expectCleanAndStillServing(['first.bin']);
  });
});
