/**
 * Issue 5, symbolic (and hard) links: a local user who can write into the receiver's folder plants
 * links where the receiver is about to write, and a hostile sender (test/transfer/harness.ts, the
 * project's own encoder on a raw TCP socket) makes it write. Each test ends with: nothing written
 * outside the target folder (`base/elsewhere` and `base` itself checked, victims byte-identical),
 * the exact wire code, no crash, and an honest sendFile() committed byte-identical afterwards.
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                                                           | where                                                                                                     |
 * |----------------------------------------------------------------|-----------------------------------------------------------------------------------------------------------|
 * | out/lnk → a folder outside, file "lnk/x" offered               | test/transfer/hostile-offers.test.ts: "an existing link out/lnk → another folder, and a file "lnk/x" …"     |
 * | out/lnk → a folder outside, folder "lnk" and file "lnk/x"      | test/transfer/hostile-offers.test.ts: "… and a folder "lnk" and a file "lnk/x" → refused E_BAD_NAME (602)"  |
 * | out/link → a file outside, a file "link" offered               | test/transfer/receiver.test.ts: "an existing symlink of that name → ACCEPT refuse E_EXISTS (601) …"         |
 * | --overwrite commit onto a symlink replaces the link itself     | test/transfer/part-file.test.ts: "commit with overwrite replaces a symlink itself, never writing through it"|
 * | temporary files opened O_CREAT | O_EXCL | O_NOFOLLOW            | test/transfer/part-file.test.ts: "opens with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600 …"                |
 *
 * New here: out/lnk → "/" itself; a link planted at the partial folder (for a transfer, and for
 * the cleaner of stale partial data); a link planted at the file in progress (`<key>.part`), with
 * and without a forged journal; a hard link planted there; a link planted at the journal's
 * temporary file; the partial folder swapped for a link after the ACCEPT (before the file in
 * progress exists, and after, with a file of other bytes waiting at its name); a link planted at
 * the final name before the commit, under each policy; a folder swapped for a link between the
 * ACCEPT and the commit. Swaps are deterministic: the test plays the sender, and swaps after the
 * ACCEPT (or a progress event) and before the frames that follow.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import { WHOLE_TRANSFER, type OfferEntry } from '../../src/protocol/index.js';
import { JOURNAL_SUFFIX, PARTIAL_DIR, resumeKey } from '../../src/transfer/journal.js';
import { PartFile } from '../../src/transfer/part-file.js';
import { sendFile } from '../../src/transfer/sender.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, MTIME, digestOf, offerEntries, offerOf, sendAll } from '../transfer/harness.js';
import {
  base,
  elsewhere,
  events,
  expectCleanAndStillServing,
  expectResumeDataOnly,
  partialFiles,
  port,
  restartReceiver,
  source,
  target,
  useReceiverFixture,
} from '../transfer/receiver-fixture.js';

useReceiverFixture();

const CHUNK = 1024;
/** Three full chunks and a short one. */
const SIZE = 3 * CHUNK + 300;
const content = seededBytes(SIZE, 4242);
const VICTIM = 'precious: must never change\n';

/** The offer entry FakeSender.offerAccepted('x.bin', SIZE, CHUNK) makes, and so the key of its partial data. */
const ENTRY: OfferEntry = offerOf('x.bin', SIZE, CHUNK).entries[0]!;
const KEY = resumeKey(ENTRY, 'xxh128');
const partial = (name: string) => path.join(target, PARTIAL_DIR, name);

async function victim(name = 'victim.txt'): Promise<string> {
  const p = path.join(elsewhere, name);
  await fs.writeFile(p, VICTIM);
  return p;
}

/** `p` still holds exactly what victim() wrote, and `elsewhere` holds nothing but `names`. */
async function expectUntouched(p: string, names: string[]): Promise<void> {
  expect(await fs.readFile(p, 'utf8')).toBe(VICTIM);
  expect((await fs.readdir(elsewhere)).sort()).toEqual(names.sort());
}

/** The honest checks of expectCleanAndStillServing, with `elsewhere` allowed to hold the victims of the test. */
async function expectStillServingWith(victims: string[], keep: string[] = []): Promise<void> {
  // expectCleanAndStillServing wants `elsewhere` empty: move the victims aside (they were checked).
  const aside = path.join(source.path, 'victims');
  await fs.mkdir(aside);
  for (const v of victims) await fs.rename(path.join(elsewhere, v), path.join(aside, v));
  await expectCleanAndStillServing(keep);
}

/** Sends x.bin honestly after offerAccepted; returns the verdicts. */
async function sendX(s: FakeSender) {
  await s.sendEntry(0, content, CHUNK);
  return s.verdicts();
}

describe('links planted in the target folder', () => {
  it('out/lnk → "/" and a file "lnk/<name>" offered → refused E_BAD_NAME (602), nothing created in /', async () => {
    await fs.symlink('/', path.join(target, 'lnk'));
    const name = `sockxfer-hostile-${process.pid}-${Date.now()}.txt`;
    try {
      const s = await FakeSender.connect(port);
      await s.hello();
      const accepts = await s.offer(offerEntries([{ name: `lnk/${name}`, size: 10 }], CHUNK));
      expect(accepts).toMatchObject([{ index: 0, action: 'refuse', code: 602 }]);
      expect(accepts[0]!.message).toMatch(/lnk is a symbolic link in the target folder; sockxfer does not write through links/);
      const verdicts = await s.verdicts();
      expect(verdicts).toMatchObject([
        { index: 0, status: 'failed', code: 602, path: '' },
        { index: WHOLE_TRANSFER, status: 'committed' },
      ]);
      const done = await events.done.next();
      expect(done.entries[0]).toMatchObject({ result: 'failed', code: 'E_BAD_NAME' });
      await expect(fs.lstat(path.join('/', name))).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await fs.lstat(path.join(target, 'lnk'))).isSymbolicLink()).toBe(true);
      await expectCleanAndStillServing(['lnk']);
    } finally {
      await fs.rm(path.join('/', name), { force: true });
    }
  });

  describe('at the partial folder (.sockxfer-partial → a folder outside)', () => {
    it('an offer is refused as a whole, REFUSE E_BAD_NAME (602), and nothing is written through the link', async () => {
      await fs.symlink(elsewhere, path.join(target, PARTIAL_DIR));
      const s = await FakeSender.connect(port);
      await s.hello();
      s.send(offerOf('x.bin', SIZE, CHUNK));
      const reply = await s.next();
      expect(reply).toMatchObject({ type: 'refuse', code: 602, index: WHOLE_TRANSFER });
      expect((reply as { message: string }).message).toMatch(/cannot use \.sockxfer-partial in the target folder: \.sockxfer-partial is a symbolic link/);
      await s.closed;
      expect((await events.failed.next()).error.code).toBe('E_BAD_NAME');
      // While the link stands, an honest sender is refused the same way (never written through it).
      await fs.writeFile(path.join(source.path, 'honest.bin'), content);
      const err = await sendFile({ file: path.join(source.path, 'honest.bin'), target: { host: '127.0.0.1', port }, hash: 'xxh128', chunkSize: CHUNK, timeoutMs: 10_000 }).then(
        () => expect.fail('expected E_BAD_NAME'),
        (e: unknown) => e as SockxferError,
      );
      expect(err).toMatchObject({ code: 'E_BAD_NAME', exitCode: 6 });
      expect((await events.failed.next()).error.code).toBe('E_BAD_NAME');
      expect(await fs.readdir(elsewhere)).toEqual([]);
      expect((await fs.lstat(path.join(target, PARTIAL_DIR))).isSymbolicLink()).toBe(true);
      expect(await fs.readdir(target)).toEqual([PARTIAL_DIR]);
      // Once the operator removes the link, the next honest sender gets through.
      await fs.unlink(path.join(target, PARTIAL_DIR));
      await expectCleanAndStillServing([]);
    });

    it('the cleaner of stale partial data (run at start) removes nothing through the link', async () => {
      // Older than the default TTL of 24 h: what the cleaner removes from a real partial folder.
      const old = path.join(elsewhere, `${KEY}.part`);
      const other = path.join(elsewhere, 'backup-2019.tar');
      await fs.writeFile(old, VICTIM);
      await fs.writeFile(other, VICTIM);
      const threeDaysAgo = Date.now() / 1000 - 3 * 24 * 3600;
      for (const p of [old, other]) await fs.utimes(p, threeDaysAgo, threeDaysAgo);
      await fs.symlink(elsewhere, path.join(target, PARTIAL_DIR));
      await restartReceiver({}); // start() runs cleanPartials before it returns
      await expectUntouched(old, [`${KEY}.part`, 'backup-2019.tar']);
      await expectUntouched(other, [`${KEY}.part`, 'backup-2019.tar']);
      expect((await fs.lstat(path.join(target, PARTIAL_DIR))).isSymbolicLink()).toBe(true);
      await fs.unlink(path.join(target, PARTIAL_DIR));
      await expectStillServingWith([`${KEY}.part`, 'backup-2019.tar']);
    });
  });

  it('in a real partial folder, the cleaner removes stale resume data only, never a file it did not make', async () => {
    await fs.mkdir(path.join(target, PARTIAL_DIR));
    const stale = [`${KEY}.part`, `${KEY}${JOURNAL_SUFFIX}`, `${KEY}${JOURNAL_SUFFIX}.tmp`, '.sockxfer-0123456789ab-x.bin.part'];
    for (const n of [...stale, 'notes.txt']) await fs.writeFile(partial(n), VICTIM);
    const threeDaysAgo = Date.now() / 1000 - 3 * 24 * 3600;
    for (const n of [...stale, 'notes.txt']) await fs.utimes(partial(n), threeDaysAgo, threeDaysAgo);
    await restartReceiver({});
    expect(await partialFiles()).toEqual(['notes.txt']);
    expect(await fs.readFile(partial('notes.txt'), 'utf8')).toBe(VICTIM);
    await fs.rm(path.join(target, PARTIAL_DIR), { recursive: true });
    await expectCleanAndStillServing([]);
  });

  describe('at the file in progress (.sockxfer-partial/<key>.part)', () => {
    it('a link to a file outside: replaced, never written through; the transfer commits byte-identical', async () => {
      const v = await victim();
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.symlink(v, partial(`${KEY}.part`));
      const s = await FakeSender.connect(port);
      await s.offerAccepted('x.bin', SIZE, CHUNK);
      expect(await sendX(s)).toMatchObject([
        { index: 0, status: 'committed', code: 0, path: 'x.bin' },
        { index: WHOLE_TRANSFER, status: 'committed' },
      ]);
      expect(await events.done.next()).toMatchObject({ committed: 1, failed: 0 });
      expect((await fs.readFile(path.join(target, 'x.bin'))).equals(content)).toBe(true);
      await expectUntouched(v, ['victim.txt']);
      await expectStillServingWith(['victim.txt'], ['x.bin']);
    });

    it('a dangling link to a path outside: nothing created there', async () => {
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.symlink(path.join(elsewhere, 'created.txt'), partial(`${KEY}.part`));
      const s = await FakeSender.connect(port);
      await s.offerAccepted('x.bin', SIZE, CHUNK);
      expect((await sendX(s))[0]).toMatchObject({ index: 0, status: 'committed', path: 'x.bin' });
      expect(await events.done.next()).toMatchObject({ committed: 1 });
      expect(await fs.readdir(elsewhere)).toEqual([]);
      await expectCleanAndStillServing(['x.bin']);
    });

    it('a link to a file outside beside a forged journal claiming every chunk: not resumed (ACCEPT holds nothing), never written through', async () => {
      // As long as the transfer, so that a receiver following the link would find it a fit.
      const v = path.join(elsewhere, 'victim.bin');
      const precious = seededBytes(SIZE, 6);
      await fs.writeFile(v, precious);
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.symlink(v, partial(`${KEY}.part`));
      await fs.writeFile(partial(`${KEY}${JOURNAL_SUFFIX}`), JSON.stringify({ v: 1, name: 'x.bin', size: SIZE, mtimeMs: MTIME, hash: 'xxh128', ranges: [[0, SIZE]] }));
      const s = await FakeSender.connect(port);
      // offerAccepted checks the ACCEPT is a plain send, with no chunk claimed as held.
      await s.offerAccepted('x.bin', SIZE, CHUNK);
      expect((await sendX(s))[0]).toMatchObject({ index: 0, status: 'committed', path: 'x.bin' });
      expect(await events.done.next()).toMatchObject({ committed: 1 });
      expect((await fs.readFile(path.join(target, 'x.bin'))).equals(content)).toBe(true);
      expect((await fs.readFile(v)).equals(precious)).toBe(true);
      expect(await fs.readdir(elsewhere)).toEqual(['victim.bin']);
      await expectStillServingWith(['victim.bin'], ['x.bin']);
    });

    it('a hard link to a file outside beside a forged journal: not resumed into it (ACCEPT holds nothing), the file outside unchanged', async () => {
      // A file as long as the transfer, so the forged journal's ranges fit it.
      const v = path.join(elsewhere, 'victim.bin');
      const precious = seededBytes(SIZE, 7);
      await fs.writeFile(v, precious);
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.link(v, partial(`${KEY}.part`));
      await fs.writeFile(partial(`${KEY}${JOURNAL_SUFFIX}`), JSON.stringify({ v: 1, name: 'x.bin', size: SIZE, mtimeMs: MTIME, hash: 'xxh128', ranges: [[0, CHUNK]] }));
      const s = await FakeSender.connect(port);
      await s.hello();
      const accepts = await s.offer(offerOf('x.bin', SIZE, CHUNK));
      // Resuming would write the chunks not held into the file outside (the same inode).
      expect(accepts).toEqual([sendAll(0)]);
      await s.sendEntry(0, content, CHUNK);
      expect((await s.verdicts())[0]).toMatchObject({ index: 0, status: 'committed', path: 'x.bin' });
      expect(await events.done.next()).toMatchObject({ committed: 1 });
      expect((await fs.readFile(v)).equals(precious)).toBe(true);
      expect((await fs.stat(v)).nlink).toBe(1);
      expect((await fs.readFile(path.join(target, 'x.bin'))).equals(content)).toBe(true);
      await fs.rename(v, path.join(source.path, 'victim.bin'));
      await expectCleanAndStillServing(['x.bin']);
    });

    it('a forged journal that is JSON null beside a real file in progress: ignored, the file sent whole and committed', async () => {
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.writeFile(partial(`${KEY}.part`), seededBytes(SIZE, 5));
      await fs.writeFile(partial(`${KEY}${JOURNAL_SUFFIX}`), 'null');
      const s = await FakeSender.connect(port);
      await s.offerAccepted('x.bin', SIZE, CHUNK);
      expect((await sendX(s))[0]).toMatchObject({ index: 0, status: 'committed', path: 'x.bin' });
      expect(await events.done.next()).toMatchObject({ committed: 1 });
      expect((await fs.readFile(path.join(target, 'x.bin'))).equals(content)).toBe(true);
      await expectCleanAndStillServing(['x.bin']);
    });

    it('PartFile.resume() itself refuses a file with a second hard link (a link planted after the journal was read)', async () => {
      const v = path.join(elsewhere, 'victim.bin');
      const precious = seededBytes(SIZE, 8);
      await fs.writeFile(v, precious);
      await fs.mkdir(path.join(target, PARTIAL_DIR));
      await fs.link(v, partial(`${KEY}.part`));
      expect(() => PartFile.resume(partial(`${KEY}.part`), [[0, CHUNK]], async () => {})).toThrow(
        expect.objectContaining({ code: 'E_IO', message: expect.stringMatching(/is not a file of its own \(2 links\)/) }),
      );
      expect((await fs.readFile(v)).equals(precious)).toBe(true);
      await fs.unlink(partial(`${KEY}.part`));
      await fs.rename(v, path.join(source.path, 'victim.bin'));
      await expectCleanAndStillServing([]);
    });
  });

  it("a link to a file outside at the journal's temporary file (<key>.journal.tmp): the journal is not written through it, and the resume still works", async () => {
    const v = await victim();
    await fs.mkdir(path.join(target, PARTIAL_DIR));
    await fs.symlink(v, partial(`${KEY}${JOURNAL_SUFFIX}.tmp`));
    const first = await FakeSender.connect(port);
    await first.offerAccepted('x.bin', SIZE, CHUNK);
    first.send({ type: 'data', index: 0, chunk: 0, data: [content.subarray(0, CHUNK)] });
    first.send({ type: 'data', index: 0, chunk: 1, data: [content.subarray(CHUNK, 2 * CHUNK)] });
    first.socket.end();
    await first.closed;
    // Cut short: the receiver keeps the two chunks for a resume, and writes their journal.
    expect((await events.failed.next()).error.code).toBe('E_CONNECTION_LOST');
    await expectUntouched(v, ['victim.txt']);
    expectResumeDataOnly(await partialFiles());
    expect((await fs.lstat(partial(`${KEY}${JOURNAL_SUFFIX}`))).isFile()).toBe(true);
    expect(JSON.parse(await fs.readFile(partial(`${KEY}${JOURNAL_SUFFIX}`), 'utf8'))).toMatchObject({ name: 'x.bin', size: SIZE, ranges: [[0, 2 * CHUNK]] });

    // The same file offered again: the two chunks are held, the rest completes it.
    const second = await FakeSender.connect(port);
    await second.hello();
    expect(await second.offer(offerOf('x.bin', SIZE, CHUNK))).toEqual([{ ...sendAll(0), have: [[0, 2]] }]);
    second.send({ type: 'data', index: 0, chunk: 2, data: [content.subarray(2 * CHUNK, 3 * CHUNK)] });
    second.send({ type: 'data', index: 0, chunk: 3, data: [content.subarray(3 * CHUNK)] });
    second.send({ type: 'end', index: 0, size: SIZE, hash: 'xxh128', digest: await digestOf('xxh128', content), abandoned: false });
    expect((await second.verdicts())[0]).toMatchObject({ index: 0, status: 'committed', path: 'x.bin' });
    expect(await events.done.next()).toMatchObject({ committed: 1 });
    expect((await fs.readFile(path.join(target, 'x.bin'))).equals(content)).toBe(true);
    await expectUntouched(v, ['victim.txt']);
    await expectStillServingWith(['victim.txt'], ['x.bin']);
  });
});

describe('the partial folder swapped for a link during the transfer', () => {
  /** Moves the real partial folder aside and puts a link to `elsewhere` in its place. */
  async function swapPartialFolder(): Promise<void> {
    await fs.rename(path.join(target, PARTIAL_DIR), path.join(target, `${PARTIAL_DIR}.moved`));
    await fs.symlink(elsewhere, path.join(target, PARTIAL_DIR));
  }

  /** After a swap: the link removed (as its owner would), the real folder holding no resume data of ours. */
  async function unswap(): Promise<string[]> {
    await fs.unlink(path.join(target, PARTIAL_DIR));
    const moved = await fs.readdir(path.join(target, `${PARTIAL_DIR}.moved`));
    await fs.rm(path.join(target, `${PARTIAL_DIR}.moved`), { recursive: true });
    return moved;
  }

  it('after the ACCEPT, before the first chunk: the file in progress is not created through the link; the entry fails E_BAD_NAME (602)', async () => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('x.bin', SIZE, CHUNK);
    await swapPartialFolder();
    const verdicts = await sendX(s);
    expect(verdicts[0]).toMatchObject({ index: 0, status: 'failed', code: 602, path: '' });
    expect(verdicts[0]!.message).toMatch(/\.sockxfer-partial became a symbolic link/);
    expect(verdicts.at(-1)).toMatchObject({ index: WHOLE_TRANSFER, status: 'committed' });
    expect((await events.done.next()).entries[0]).toMatchObject({ result: 'failed', code: 'E_BAD_NAME' });
    await expect(fs.lstat(path.join(target, 'x.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fs.readdir(elsewhere)).toEqual([]);
    expect(await unswap()).toEqual([]);
    await expectCleanAndStillServing([]);
  });

  it('after the ACCEPT, then the sender hangs up mid-file: no file in progress and no journal are left through the link for a resume', async () => {
    const s = await FakeSender.connect(port);
    await s.offerAccepted('x.bin', SIZE, CHUNK);
    await swapPartialFolder();
    s.send({ type: 'data', index: 0, chunk: 0, data: [content.subarray(0, CHUNK)] });
    s.send({ type: 'data', index: 0, chunk: 1, data: [content.subarray(CHUNK, 2 * CHUNK)] });
    s.socket.end();
    await s.closed;
    expect((await events.failed.next()).error.code).toBe('E_CONNECTION_LOST');
    expect(await fs.readdir(elsewhere)).toEqual([]);
    expect(await unswap()).toEqual([]);
    await expectCleanAndStillServing([]);
  });

  it('after the file in progress was created: its commit does not take a file planted at its name through the link; the entry fails E_BAD_NAME (602)', async () => {
    const BIG = 64 * 1024;
    const big = seededBytes(5 * BIG + 17, 4343);
    const entry = offerOf('big.bin', big.length, BIG).entries[0]!;
    const key = resumeKey(entry, 'xxh128');
    const s = await FakeSender.connect(port);
    await s.offerAccepted('big.bin', big.length, BIG);
    for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [big.subarray(i * BIG, (i + 1) * BIG)] });
    // 256 KiB written: the file in progress exists (the receiver reports progress every 256 KiB).
    expect(await events.progress.next()).toBe(4 * BIG);
    // A file of other bytes waits at the same name in the folder the link points to.
    const planted = path.join(elsewhere, `${key}.part`);
    const forged = seededBytes(big.length, 1);
    await fs.writeFile(planted, forged);
    await swapPartialFolder();
    s.send({ type: 'data', index: 0, chunk: 4, data: [big.subarray(4 * BIG, 5 * BIG)] });
    s.send({ type: 'data', index: 0, chunk: 5, data: [big.subarray(5 * BIG)] });
    s.send({ type: 'end', index: 0, size: big.length, hash: 'xxh128', digest: await digestOf('xxh128', big), abandoned: false });
    const verdicts = await s.verdicts();
    expect(verdicts[0]).toMatchObject({ index: 0, status: 'failed', code: 602, path: '' });
    expect(verdicts[0]!.message).toMatch(/\.sockxfer-partial became a symbolic link/);
    expect((await events.done.next()).entries[0]).toMatchObject({ result: 'failed', code: 'E_BAD_NAME' });
    // Not committed: no big.bin holding the planted bytes under the hash the sender vouched for.
    await expect(fs.lstat(path.join(target, 'big.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    // The planted file is untouched (not moved, not linked, not removed), and nothing else is there.
    expect((await fs.readFile(planted)).equals(forged)).toBe(true);
    expect((await fs.stat(planted)).nlink).toBe(1);
    expect(await fs.readdir(elsewhere)).toEqual([`${key}.part`]);
    await unswap();
    await fs.rename(planted, path.join(source.path, 'planted.part'));
    await expectCleanAndStillServing([]);
  });

  it('after the file in progress was created, then the sender hangs up: its resume journal is not written through the link', async () => {
    const BIG = 64 * 1024;
    const big = seededBytes(5 * BIG + 17, 4444);
    const s = await FakeSender.connect(port);
    await s.offerAccepted('big.bin', big.length, BIG);
    for (let i = 0; i < 4; i++) s.send({ type: 'data', index: 0, chunk: i, data: [big.subarray(i * BIG, (i + 1) * BIG)] });
    expect(await events.progress.next()).toBe(4 * BIG);
    await swapPartialFolder();
    s.socket.end();
    await s.closed;
    expect((await events.failed.next()).error.code).toBe('E_CONNECTION_LOST');
    // Cut short, the receiver keeps what it wrote for a resume and records it in a journal: not in `elsewhere`.
    expect(await fs.readdir(elsewhere)).toEqual([]);
    // The data itself stays where it was written, in the real folder (moved aside), without a journal.
    expect((await unswap()).filter((n) => n.endsWith(JOURNAL_SUFFIX))).toEqual([]);
    await expectCleanAndStillServing([]);
  });
});

describe('a link planted at the final name between the ACCEPT and the commit', () => {
  it.each([
    ['refuse', 601, 'failed'],
    ['overwrite', 0, 'committed'],
    ['keep-both', 0, 'committed'],
  ] as const)('policy %s: the file outside never written (VERDICT code %i, %s)', async (policy, code, status) => {
    await restartReceiver({ policy });
    const v = await victim();
    const s = await FakeSender.connect(port);
    await s.offerAccepted('x.bin', SIZE, CHUNK);
    await fs.symlink(v, path.join(target, 'x.bin'));
    const verdicts = await sendX(s);
    expect(verdicts[0]).toMatchObject({ index: 0, status, code });
    await expectUntouched(v, ['victim.txt']);
    const done = await events.done.next();
    if (policy === 'refuse') {
      expect(verdicts[0]!.message).toMatch(/x\.bin appeared in the target folder during the transfer; not overwritten/);
      expect(done.entries[0]).toMatchObject({ result: 'failed', code: 'E_EXISTS' });
      expect((await fs.lstat(path.join(target, 'x.bin'))).isSymbolicLink()).toBe(true);
      await expectStillServingWith(['victim.txt'], ['x.bin']);
    } else {
      // overwrite replaces the link itself; keep-both lands beside it.
      const landed = policy === 'overwrite' ? 'x.bin' : 'x (1).bin';
      expect(verdicts[0]).toMatchObject({ path: landed });
      expect((await fs.lstat(path.join(target, landed))).isFile()).toBe(true);
      expect((await fs.readFile(path.join(target, landed))).equals(content)).toBe(true);
      await expectStillServingWith(['victim.txt'], policy === 'overwrite' ? ['x.bin'] : ['x.bin', 'x (1).bin']);
    }
  });
});

describe('a folder swapped for a link between the ACCEPT and the commit', () => {
  it('the file inside is refused E_BAD_NAME (602), the folder E_IO (800); nothing lands outside, its mode and mtime untouched', async () => {
    const s = await FakeSender.connect(port);
    await s.hello();
    const FOLDER_MTIME = Date.UTC(2001, 0, 1);
    const accepts = await s.offer(offerEntries([{ name: 'd', kind: 'directory', mode: 0o700, mtimeMs: FOLDER_MTIME }, { name: 'd/x.bin', size: SIZE }], CHUNK));
    expect(accepts).toEqual([sendAll(0), sendAll(1)]);
    // Planned: d exists as a real folder. Now a local user swaps it for a link to a folder outside.
    expect((await fs.lstat(path.join(target, 'd'))).isDirectory()).toBe(true);
    const before = await fs.stat(elsewhere);
    await fs.rename(path.join(target, 'd'), path.join(target, 'd.moved'));
    await fs.symlink(elsewhere, path.join(target, 'd'));
    await s.sendEntry(1, content, CHUNK);
    const verdicts = await s.verdicts();
    const of = (i: number) => verdicts.find((v) => v.index === i);
    expect(of(1)).toMatchObject({ status: 'failed', code: 602, path: '' });
    expect(of(1)!.message).toMatch(/^d became a symbolic link in the target folder during the transfer; not written through it/);
    expect(of(0)).toMatchObject({ status: 'failed', code: 800, path: '' });
    expect(of(0)!.message).toMatch(/^d is no longer a folder/);
    expect(verdicts.at(-1)).toMatchObject({ index: WHOLE_TRANSFER, status: 'committed' });
    const done = await events.done.next();
    expect(done.entries).toMatchObject([
      { index: 0, result: 'failed', code: 'E_IO' },
      { index: 1, result: 'failed', code: 'E_BAD_NAME' },
    ]);
    expect(await fs.readdir(elsewhere)).toEqual([]);
    const after = await fs.stat(elsewhere);
    expect(after.mode).toBe(before.mode);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await fs.readdir(path.join(target, 'd.moved'))).toEqual([]);
    expect((await fs.readdir(base.path)).sort()).toEqual(['elsewhere', 'out']);
    await expectCleanAndStillServing(['d', 'd.moved']);
  });
});
