/**
 * send() of folders, several paths and standard input to an in-process Receiver on 127.0.0.1
 * port 0, real temporary folders on both sides: the tree arrives byte for byte with modes and
 * mtimes (files and folders), links are skipped or followed, and the receiver's policy decides
 * what happens to files that exist already.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import type { TransferResult } from '../../src/transfer/events.js';
import type { OverwritePolicy } from '../../src/transfer/target.js';
import { send, type SendOptions } from '../../src/transfer/sender.js';
import type { Skipped } from '../../src/transfer/sources.js';
import { seededBytes } from '../helpers/seeded.js';
import { digestOf, listTree } from './harness.js';
import { events, partialFiles, port, restartReceiver, source, target, useReceiverFixture, visibleTree } from './receiver-fixture.js';

useReceiverFixture();

const T = (iso: string) => new Date(iso).getTime();

function options(sources: string[], more: Partial<SendOptions> = {}): SendOptions {
  return { sources, target: { host: '127.0.0.1', port }, hash: 'xxh128', chunkSize: 4096, timeoutMs: 10_000, ...more };
}

/** Sets a file's or folder's mtime to the whole millisecond `ms` (the half microsecond keeps it from rounding down). */
async function setMtime(p: string, ms: number): Promise<void> {
  const s = ms / 1000 + 5e-7;
  await fs.utimes(p, s, s);
}

/** Writes `content` at `p` (creating folders) with `mode` and mtime `ms`. */
async function writeFile(p: string, content: Buffer | string, mode = 0o644, ms = T('2021-06-07T08:09:10.123Z')): Promise<void> {
  await fs.mkdir(path.dirname(p), { recursive: true });
  await fs.writeFile(p, content);
  await fs.chmod(p, mode);
  await setMtime(p, ms);
}

/** Every file and folder under `root` arrived under `dest` with the same bytes, mode and mtime (to the ms). */
async function expectSameTree(root: string, dest: string, names: string[]): Promise<void> {
  for (const name of names) {
    const from = path.join(root, ...name.split('/'));
    const to = path.join(dest, ...name.split('/'));
    const [a, b] = [await fs.stat(from), await fs.lstat(to)];
    expect(b.isDirectory(), name).toBe(a.isDirectory());
    expect(b.isFile(), name).toBe(a.isFile());
    expect(b.mode & 0o777, name).toBe(a.mode & 0o777);
    expect(Math.floor(b.mtimeMs), name).toBe(Math.floor(a.mtimeMs));
    if (a.isFile()) expect((await fs.readFile(to)).equals(await fs.readFile(from)), name).toBe(true);
  }
}

describe('send() of a tree', () => {
  /**
   * photos/                         0750
   *   a b.txt                       0640
   *   empty/                        0700 (nothing in it)
   *   link-to-a → a b.txt           (a link)
   *   zero.bin                      (0 bytes)
   *   été 2024/                     0755
   *     nested/deeper/file.bin
   *     🌞 beach.jpg                 0600, 17 chunks and a bit
   * notes.md                        (a second top-level path)
   */
  const FILES = ['photos/a b.txt', 'photos/zero.bin', 'photos/été 2024/nested/deeper/file.bin', 'photos/été 2024/🌞 beach.jpg'];
  const FOLDERS = ['photos', 'photos/empty', 'photos/été 2024', 'photos/été 2024/nested', 'photos/été 2024/nested/deeper'];

  async function makeTree(): Promise<{ photos: string; notes: string }> {
    const photos = path.join(source.path, 'photos');
    await writeFile(path.join(photos, 'a b.txt'), 'a file with a space in its name\n', 0o640);
    await writeFile(path.join(photos, 'zero.bin'), Buffer.alloc(0));
    await writeFile(path.join(photos, 'été 2024', 'nested', 'deeper', 'file.bin'), seededBytes(5000, 1), 0o644, T('2019-01-01T00:00:00.001Z'));
    await writeFile(path.join(photos, 'été 2024', '🌞 beach.jpg'), seededBytes(17 * 4096 + 123, 2), 0o600, T('2020-02-29T12:34:56.789Z'));
    await fs.mkdir(path.join(photos, 'empty'));
    await fs.symlink('a b.txt', path.join(photos, 'link-to-a'));
    // Folder modes and mtimes last, deepest first: adding to a folder changes its mtime.
    const folders: Array<[string, number, number]> = [
      ['photos/été 2024/nested/deeper', 0o755, T('2018-03-04T05:06:07.008Z')],
      ['photos/été 2024/nested', 0o755, T('2018-03-04T05:06:07.009Z')],
      ['photos/été 2024', 0o755, T('2017-12-31T23:59:59.999Z')],
      ['photos/empty', 0o700, T('2016-07-08T09:10:11.012Z')],
      ['photos', 0o750, T('2015-05-05T05:05:05.555Z')],
    ];
    for (const [rel, mode, ms] of folders) {
      await fs.chmod(path.join(source.path, rel), mode);
      await setMtime(path.join(source.path, rel), ms);
    }
    const notes = path.join(source.path, 'notes.md');
    await writeFile(notes, '# notes\n', 0o644);
    return { photos, notes };
  }

  it('arrives byte for byte, with file and folder modes and mtimes; the link inside is skipped and not created', async () => {
    const { photos, notes } = await makeTree();
    const skipped: Skipped[] = [];
    const result = await send(options([photos, notes]), { skipped: (s) => skipped.push(s) });

    expect(skipped).toEqual([{ path: path.join(photos, 'link-to-a'), reason: expect.stringMatching(/symbolic link/) }]);
    const names = result.entries.map((e) => e.name);
    expect(names).toEqual(['photos', 'photos/a b.txt', 'photos/empty', 'photos/zero.bin', 'photos/été 2024', 'photos/été 2024/nested', 'photos/été 2024/nested/deeper', 'photos/été 2024/nested/deeper/file.bin', 'photos/été 2024/🌞 beach.jpg', 'notes.md']);
    const size = (await Promise.all([...FILES, 'notes.md'].map((f) => fs.stat(path.join(source.path, f))))).reduce((n, st) => n + st.size, 0);
    expect(result).toMatchObject({ name: 'photos (+1 more)', committed: 5, upToDate: 0, failed: 0, bytes: size, sentBytes: size });
    expect(result.firstFailure).toBeUndefined();
    for (const e of result.entries) expect(e, e.name).toMatchObject({ result: 'committed', path: e.name });
    for (const e of result.entries.filter((x) => x.kind === 'file')) {
      expect(e.digest).toBe((await digestOf('xxh128', await fs.readFile(path.join(source.path, e.name)))).toString('hex'));
    }

    const done = await events.done.next();
    expect(done).toMatchObject({ committed: 5, failed: 0, upToDate: 0 });
    expect(done.entries.map((e) => e.path)).toEqual(names.map((n) => path.join(target, ...n.split('/'))));
    expect(await visibleTree()).toEqual([...FILES, ...FOLDERS, 'notes.md'].sort());
    expect(await partialFiles()).toEqual([]);
    await expectSameTree(source.path, target, [...FILES, ...FOLDERS, 'notes.md']);
  });

  it('with followSymlinks, the link arrives as a regular file with its target bytes', async () => {
    const { photos } = await makeTree();
    const skipped: Skipped[] = [];
    const result = await send(options([photos], { followSymlinks: true }), { skipped: (s) => skipped.push(s) });
    expect(skipped).toEqual([]);
    expect(result).toMatchObject({ committed: 5, failed: 0 });
    const arrived = path.join(target, 'photos', 'link-to-a');
    expect((await fs.lstat(arrived)).isFile()).toBe(true);
    expect(await fs.readFile(arrived, 'utf8')).toBe('a file with a space in its name\n');
    expect((await fs.stat(arrived)).mode & 0o777).toBe(0o640);
    await expectSameTree(source.path, target, [...FILES, ...FOLDERS]);
    expect((await events.done.next()).committed).toBe(5);
  });

  it('a stream and a file in one transfer', async () => {
    const file = path.join(source.path, 'with-stream.txt');
    await writeFile(file, 'beside the stream\n');
    const piped = seededBytes(3 * 4096 + 77, 3);
    const stdin = Readable.from([piped.subarray(0, 1000), piped.subarray(1000, 9000), piped.subarray(9000)]);
    const result = await send(options(['-', file], { streamName: 'from-stdin.bin', stdin }));
    expect(result).toMatchObject({ committed: 2, failed: 0 });
    expect(result.entries[0]).toMatchObject({ kind: 'stream', name: 'from-stdin.bin', bytes: piped.length, result: 'committed', path: 'from-stdin.bin' });
    expect((await fs.readFile(path.join(target, 'from-stdin.bin'))).equals(piped)).toBe(true);
    expect(await fs.readFile(path.join(target, 'with-stream.txt'), 'utf8')).toBe('beside the stream\n');
    expect((await events.done.next()).entries[0]).toMatchObject({ kind: 'stream', bytes: piped.length });
  });

  it('two sources with the same base name → E_USAGE before connecting', async () => {
    await writeFile(path.join(source.path, 'x', 'dup.txt'), 'x');
    await writeFile(path.join(source.path, 'y', 'dup.txt'), 'y');
    // A listener that only counts connections: a sentinel connection made after the refusal
    // is the first it sees if send() never connected.
    const seen: net.Socket[] = [];
    const counter = net.createServer((socket) => seen.push(socket));
    await new Promise<void>((resolve) => counter.listen(0, '127.0.0.1', resolve));
    const counterPort = (counter.address() as net.AddressInfo).port;
    try {
      const err = await send({ ...options([path.join(source.path, 'x', 'dup.txt'), path.join(source.path, 'y', 'dup.txt')]), target: { host: '127.0.0.1', port: counterPort } }).then(
        () => expect.fail('expected E_USAGE'),
        (e: unknown) => e as SockxferError,
      );
      expect(err).toBeInstanceOf(SockxferError);
      expect(err.code).toBe('E_USAGE');
      expect(err.message).toMatch(/would both arrive as "dup\.txt"/);
      const sentinel = net.connect({ host: '127.0.0.1', port: counterPort });
      await new Promise<void>((resolve) => counter.once('connection', () => resolve()));
      expect(seen).toHaveLength(1);
      sentinel.destroy();
    } finally {
      for (const s of seen) s.destroy();
      await new Promise<void>((resolve) => counter.close(() => resolve()));
    }
  });
});

describe('the receiver policy for files that exist already', () => {
  const OLD = T('2001-01-01T01:01:01.001Z');
  const NEW = T('2022-02-02T02:02:02.002Z');

  /** source/docs/<name> and target/docs/<name> with the given contents; returns the source folder. */
  async function both(files: Record<string, { sent: Buffer | string; held?: Buffer | string }>): Promise<string> {
    const docs = path.join(source.path, 'docs');
    for (const [name, { sent, held }] of Object.entries(files)) {
      await writeFile(path.join(docs, name), sent, 0o640, NEW);
      if (held !== undefined) await writeFile(path.join(target, 'docs', name), held, 0o600, OLD);
    }
    return docs;
  }

  const entry = (result: TransferResult, name: string) => result.entries.find((e) => e.name === name)!;

  it('refuse: an existing file of another size fails E_EXISTS, untouched; the others in the transfer commit', async () => {
    const docs = await both({ 'held.txt': { sent: 'new and longer', held: 'old' }, 'fresh.txt': { sent: 'fresh' } });
    const result = await send(options([docs]));
    expect(result).toMatchObject({ committed: 1, failed: 1, firstFailure: { code: 'E_EXISTS', name: 'docs/held.txt' } });
    expect(entry(result, 'docs/held.txt')).toMatchObject({ result: 'failed', code: 'E_EXISTS', message: expect.stringMatching(/already exists/), sentBytes: 0 });
    expect(entry(result, 'docs/fresh.txt')).toMatchObject({ result: 'committed', path: 'docs/fresh.txt' });
    expect(entry(result, 'docs')).toMatchObject({ result: 'committed' });
    expect(await fs.readFile(path.join(target, 'docs', 'held.txt'), 'utf8')).toBe('old');
    expect(Math.floor((await fs.stat(path.join(target, 'docs', 'held.txt'))).mtimeMs)).toBe(OLD);
    expect(await fs.readFile(path.join(target, 'docs', 'fresh.txt'), 'utf8')).toBe('fresh');
    expect((await events.done.next()).entries.find((e) => e.name === 'docs/held.txt')).toMatchObject({ result: 'failed', code: 'E_EXISTS' });
    expect(await visibleTree()).toEqual(['docs', 'docs/fresh.txt', 'docs/held.txt']);
  });

  it('refuse: an existing file of the same size but other bytes fails E_EXISTS without its data, untouched', async () => {
    // Short timeouts: a side that waited for what never comes would otherwise hang for long.
    await restartReceiver({ timeoutMs: 2000 });
    const docs = await both({ 'same-size.txt': { sent: 'AAAA', held: 'BBBB' }, 'fresh.txt': { sent: 'fresh' } });
    const result = await send(options([docs], { timeoutMs: 2000 }));
    expect(result).toMatchObject({ committed: 1, failed: 1 });
    expect(entry(result, 'docs/same-size.txt')).toMatchObject({ result: 'failed', code: 'E_EXISTS', sentBytes: 0 });
    expect(entry(result, 'docs/fresh.txt')).toMatchObject({ result: 'committed' });
    expect(await fs.readFile(path.join(target, 'docs', 'same-size.txt'), 'utf8')).toBe('BBBB');
  });

  it.each(['refuse', 'overwrite', 'keep-both'] as const)('%s: an identical file is up to date, and no data is sent for it', async (policy: OverwritePolicy) => {
    await restartReceiver({ policy });
    const content = seededBytes(100_000, 4);
    const docs = await both({ 'same.bin': { sent: content, held: content } });
    const result = await send(options([docs]));
    expect(result).toMatchObject({ upToDate: 1, committed: 0, failed: 0, sentBytes: 0 });
    expect(entry(result, 'docs/same.bin')).toMatchObject({ result: 'up-to-date', sentBytes: 0, path: 'docs/same.bin' });
    expect(result.stats!.bytesSent).toBeLessThan(content.length);
    expect((await events.done.next()).upToDate).toBe(1);
    expect(await visibleTree()).toEqual(['docs', 'docs/same.bin']);
    expect(Math.floor((await fs.stat(path.join(target, 'docs', 'same.bin'))).mtimeMs)).toBe(OLD);
  });

  it('overwrite: differing files (another size, and the same size) are replaced, with the sent mode and mtime', async () => {
    await restartReceiver({ policy: 'overwrite' });
    const docs = await both({ 'longer.txt': { sent: 'replacement text', held: 'old' }, 'same-size.txt': { sent: 'AAAA', held: 'BBBB' } });
    const result = await send(options([docs]));
    expect(result).toMatchObject({ committed: 2, failed: 0 });
    expect(entry(result, 'docs/longer.txt')).toMatchObject({ result: 'committed', path: 'docs/longer.txt', sentBytes: 16 });
    expect(entry(result, 'docs/same-size.txt')).toMatchObject({ result: 'committed', path: 'docs/same-size.txt', sentBytes: 4 });
    await expectSameTree(source.path, target, ['docs', 'docs/longer.txt', 'docs/same-size.txt']);
    expect(await visibleTree()).toEqual(['docs', 'docs/longer.txt', 'docs/same-size.txt']);
  });

  it('keep-both: a differing file lands as "name (1).ext" (then "name (2).ext"), the original untouched', async () => {
    await restartReceiver({ policy: 'keep-both' });
    const docs = await both({ 'report.txt': { sent: 'second version', held: 'first version, longer' }, 'notes': { sent: 'NEW!', held: 'old!' } });
    const result = await send(options([docs]));
    expect(result).toMatchObject({ committed: 2, failed: 0 });
    expect(entry(result, 'docs/report.txt')).toMatchObject({ result: 'committed', path: 'docs/report (1).txt' });
    expect(entry(result, 'docs/notes')).toMatchObject({ result: 'committed', path: 'docs/notes (1)' });
    expect((await events.done.next()).entries.find((e) => e.name === 'docs/report.txt')!.path).toBe(path.join(target, 'docs', 'report (1).txt'));
    expect(await fs.readFile(path.join(target, 'docs', 'report.txt'), 'utf8')).toBe('first version, longer');
    expect(await fs.readFile(path.join(target, 'docs', 'report (1).txt'), 'utf8')).toBe('second version');
    expect(await fs.readFile(path.join(target, 'docs', 'notes'), 'utf8')).toBe('old!');
    expect(await fs.readFile(path.join(target, 'docs', 'notes (1)'), 'utf8')).toBe('NEW!');

    // A second transfer of another docs/report.txt takes the next free name.
    const later = path.join(source.path, 'later', 'docs');
    await writeFile(path.join(later, 'report.txt'), 'third version', 0o640, NEW + 1);
    const again = await send(options([later]));
    expect(again).toMatchObject({ committed: 1, failed: 0 });
    expect(entry(again, 'docs/report.txt')).toMatchObject({ result: 'committed', path: 'docs/report (2).txt' });
    expect(await fs.readFile(path.join(target, 'docs', 'report (2).txt'), 'utf8')).toBe('third version');
    expect(await listTree(path.join(target, 'docs'))).toEqual(['notes', 'notes (1)', 'report (1).txt', 'report (2).txt', 'report.txt']);
  });
});
