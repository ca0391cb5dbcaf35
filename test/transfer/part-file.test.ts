/**
 * PartFile with real files: created exclusively with mode 0600 beside the target, written at
 * offsets in any order, finished with mode and mtime, then committed in one step (or refused
 * when the target exists), or discarded without a trace.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { SockxferError } from '../../src/errors.js';
import { PART_PREFIX, PART_SUFFIX, PENDING_HIGH_WATER, PartFile, alternativeName } from '../../src/transfer/part-file.js';
import { mulberry32, seededBytes } from '../helpers/seeded.js';

async function rejection(p: Promise<unknown>): Promise<SockxferError> {
  const err = await p.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SockxferError);
  return err as SockxferError;
}

const exists = (p: string) => fs.lstat(p).then(
  () => true,
  () => false,
);

/** Writes `data` into `part` in chunks of `size`, in a shuffled order. */
async function writeShuffled(part: PartFile, data: Buffer, size: number, seed: number): Promise<void> {
  const offsets: number[] = [];
  for (let off = 0; off < data.length; off += size) offsets.push(off);
  const rand = mulberry32(seed);
  for (let i = offsets.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [offsets[i], offsets[j]] = [offsets[j]!, offsets[i]!];
  }
  for (const off of offsets) {
    const piece = data.subarray(off, off + size);
    // Two pieces per chunk, as the deframer may hand them out.
    const cut = Math.floor(piece.length / 3);
    const wait = part.write(off, [piece.subarray(0, cut), piece.subarray(cut)], piece.length);
    if (wait) await wait;
  }
}

/** Writes the chunks of `data` (of `size` bytes, the last maybe shorter) at `offsets`, in that order, waiting when asked. */
async function writeChunks(part: PartFile, data: Buffer, size: number, offsets: number[]): Promise<void> {
  for (const off of offsets) {
    const piece = data.subarray(off, off + size);
    const cut = Math.floor(piece.length / 3);
    const wait = part.write(off, [piece.subarray(0, cut), piece.subarray(cut)], piece.length);
    if (wait) await wait;
  }
}

/** Offsets of the chunks of `size` bytes in `length` bytes, in order. */
function chunkOffsets(length: number, size: number): number[] {
  const offsets: number[] = [];
  for (let off = 0; off < length; off += size) offsets.push(off);
  return offsets;
}

/** A UDP chunk's payload: what the small-write tests use. */
const SMALL = 1428;

const MTIME_MS = Date.UTC(2021, 4, 6, 7, 8, 9, 250);

describe('PartFile', () => {
  let tmp: DirectoryResult;
  let parts: PartFile[];

  beforeEach(async () => {
    tmp = await dir({ unsafeCleanup: true });
    parts = [];
  });

  afterEach(async () => {
    for (const p of parts) await p.discard();
    await tmp.cleanup();
  });

  async function create(name: string): Promise<PartFile> {
    const part = await PartFile.create(tmp.path, name);
    parts.push(part);
    return part;
  }

  it('is created beside the target as .sockxfer-*.part, mode 0600, empty', async () => {
    const part = await create('file.bin');
    expect(path.dirname(part.path)).toBe(tmp.path);
    const base = path.basename(part.path);
    expect(base.startsWith(PART_PREFIX)).toBe(true);
    expect(base.endsWith(PART_SUFFIX)).toBe(true);
    expect(base).toMatch(/^\.sockxfer-[0-9a-f]{12}-file\.bin\.part$/);
    const st = await fs.stat(part.path);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(0);
  });

  it('two part files for the same name get different paths', async () => {
    const a = await create('same');
    const b = await create('same');
    expect(a.path).not.toBe(b.path);
  });

  it('writes chunks out of order, finishes with mode and mtime, commits the exact bytes', async () => {
    const data = seededBytes(1024 * 1024 + 123, 9);
    const part = await create('out-of-order.bin');
    await writeShuffled(part, data, 4096, 1);
    // Still private while in progress.
    expect((await fs.stat(part.path)).mode & 0o777).toBe(0o600);
    await part.finish(0o640, MTIME_MS);
    const target = path.join(tmp.path, 'out-of-order.bin');
    expect(await part.commit(target, 'refuse')).toBe(target);

    const st = await fs.stat(target);
    expect(st.mode & 0o777).toBe(0o640);
    expect(Math.abs(st.mtimeMs - MTIME_MS)).toBeLessThan(1);
    expect(st.size).toBe(data.length);
    expect((await fs.readFile(target)).equals(data)).toBe(true);
    expect(await fs.readdir(tmp.path)).toEqual(['out-of-order.bin']);
    expect(await exists(part.path)).toBe(false);
  });

  it("calls each write's onWritten once, only after its bytes are in the file: the caller may reuse the buffer then", async () => {
    // 3,000 UDP-sized chunks in order (several merged pwritevs), each from a buffer of its own,
    // as a UDP receiver's pool lends them. Each buffer is scribbled over the moment it comes back:
    // a callback that came before the pwritev would leave 0xee bytes in the file.
    const data = seededBytes(3000 * SMALL - 17, 21);
    const part = await create('lent.bin');
    const calls = new Map<number, number>();
    let early = 0;
    const fd = fsSync.openSync(part.path, 'r');
    try {
      for (const off of chunkOffsets(data.length, SMALL)) {
        const lent = Buffer.from(data.subarray(off, off + SMALL));
        const wait = part.write(off, [lent], lent.length, () => {
          calls.set(off, (calls.get(off) ?? 0) + 1);
          const onDisk = Buffer.alloc(lent.length);
          fsSync.readSync(fd, onDisk, 0, lent.length, off);
          if (!onDisk.equals(data.subarray(off, off + lent.length))) early++;
          lent.fill(0xee);
        });
        if (wait) await wait;
      }
      await part.finish(0o644, MTIME_MS);
    } finally {
      fsSync.closeSync(fd);
    }
    expect(early).toBe(0);
    expect(calls.size).toBe(3000);
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    const target = path.join(tmp.path, 'lent.bin');
    await part.commit(target, 'refuse');
    expect((await fs.readFile(target)).equals(data)).toBe(true);
  });

  it('finish keeps only permission bits of the mode', async () => {
    const part = await create('setuid');
    part.write(0, [Buffer.from('x')], 1);
    await part.finish(0o4755, MTIME_MS);
    expect((await fs.stat(part.path)).mode & 0o7777).toBe(0o755);
  });

  it("finish never grants more than the receiver's umask allows (a sender cannot make a file world-writable)", async () => {
    const umask = process.umask(0o022); // read this process's umask (and put it straight back)
    process.umask(umask);
    expect(umask & 0o002).toBe(0o002); // the check below means something only when others' write is masked
    const part = await create('open');
    part.write(0, [Buffer.from('x')], 1);
    await part.finish(0o777, MTIME_MS);
    expect((await fs.stat(part.path)).mode & 0o777).toBe(0o777 & ~umask);
  });

  it('a zero-byte file commits as an empty file', async () => {
    const part = await create('empty');
    await part.finish(0o600, MTIME_MS);
    const target = path.join(tmp.path, 'empty');
    await part.commit(target, 'refuse');
    expect((await fs.stat(target)).size).toBe(0);
    expect(await fs.readdir(tmp.path)).toEqual(['empty']);
  });

  it('commit without overwrite onto an existing file: E_EXISTS, the file untouched, the part kept until discard()', async () => {
    const target = path.join(tmp.path, 'taken.txt');
    await fs.writeFile(target, 'original contents');
    const part = await create('taken.txt');
    part.write(0, [Buffer.from('new contents')], 12);
    await part.finish(0o644, MTIME_MS);

    const err = await rejection(part.commit(target, 'refuse'));
    expect(err.code).toBe('E_EXISTS');
    expect(err.wireCode).toBe(601);
    expect(err.message).toBe('taken.txt appeared in the target folder during the transfer; not overwritten');
    expect(await fs.readFile(target, 'utf8')).toBe('original contents');
    expect(await exists(part.path)).toBe(true);
    expect(await fs.readFile(part.path, 'utf8')).toBe('new contents');

    await part.discard();
    expect(await exists(part.path)).toBe(false);
    expect(await fs.readdir(tmp.path)).toEqual(['taken.txt']);
    expect(await fs.readFile(target, 'utf8')).toBe('original contents');
  });

  it('commit with overwrite replaces the existing file', async () => {
    const target = path.join(tmp.path, 'replace.txt');
    await fs.writeFile(target, 'old old old old old');
    const part = await create('replace.txt');
    part.write(0, [Buffer.from('new')], 3);
    await part.finish(0o600, MTIME_MS);
    expect(await part.commit(target, 'overwrite')).toBe(target);
    expect(await fs.readFile(target, 'utf8')).toBe('new');
    expect(await fs.readdir(tmp.path)).toEqual(['replace.txt']);
  });

  it('commit with overwrite replaces a symlink itself, never writing through it', async () => {
    const outside = await dir({ unsafeCleanup: true });
    try {
      const victim = path.join(outside.path, 'victim');
      await fs.writeFile(victim, 'keep me');
      const target = path.join(tmp.path, 'link');
      await fs.symlink(victim, target);
      const part = await create('link');
      part.write(0, [Buffer.from('payload')], 7);
      await part.finish(0o600, MTIME_MS);
      await part.commit(target, 'overwrite');
      expect((await fs.lstat(target)).isFile()).toBe(true);
      expect(await fs.readFile(target, 'utf8')).toBe('payload');
      expect(await fs.readFile(victim, 'utf8')).toBe('keep me');
    } finally {
      await outside.cleanup();
    }
  });

  it('commit without a policy refuses (the default): E_EXISTS, the existing file untouched', async () => {
    const target = path.join(tmp.path, 'default.txt');
    await fs.writeFile(target, 'mine');
    const part = await create('default.txt');
    part.write(0, [Buffer.from('theirs')], 6);
    await part.finish(0o644, MTIME_MS);
    const err = await rejection(part.commit(target));
    expect(err.code).toBe('E_EXISTS');
    expect(await fs.readFile(target, 'utf8')).toBe('mine');
    expect(await fs.readFile(part.path, 'utf8')).toBe('theirs');
  });

  describe('keep-both', () => {
    /** A finished part file for `name` holding `contents`. */
    async function finished(name: string, contents: Buffer): Promise<PartFile> {
      const part = await create(name);
      part.write(0, [contents], contents.length);
      await part.finish(0o644, MTIME_MS);
      return part;
    }

    it('with the name free, lands at the name itself', async () => {
      const data = seededBytes(3000, 40);
      const target = path.join(tmp.path, 'free.bin');
      const part = await finished('free.bin', data);
      expect(await part.commit(target, 'keep-both')).toBe(target);
      expect((await fs.readFile(target)).equals(data)).toBe(true);
      expect(await fs.readdir(tmp.path)).toEqual(['free.bin']);
    });

    it('with the name taken, lands at "x (1).bin", then "x (2).bin", never replacing a file', async () => {
      const original = seededBytes(5000, 41);
      const first = seededBytes(4000, 42);
      const second = seededBytes(6000, 43);
      const target = path.join(tmp.path, 'x.bin');
      await fs.writeFile(target, original);

      const a = await finished('x.bin', first);
      const landedA = await a.commit(target, 'keep-both');
      expect(landedA).toBe(path.join(tmp.path, 'x (1).bin'));
      expect(await exists(a.path)).toBe(false);

      const b = await finished('x.bin', second);
      const landedB = await b.commit(target, 'keep-both');
      expect(landedB).toBe(path.join(tmp.path, 'x (2).bin'));
      expect(await exists(b.path)).toBe(false);

      // Every file byte for byte what it was: nothing replaced, no part file left.
      expect((await fs.readFile(target)).equals(original)).toBe(true);
      expect((await fs.readFile(landedA)).equals(first)).toBe(true);
      expect((await fs.readFile(landedB)).equals(second)).toBe(true);
      expect((await fs.readdir(tmp.path)).sort()).toEqual(['x (1).bin', 'x (2).bin', 'x.bin']);
      // The landed file has the mode and mtime finish() gave it.
      const st = await fs.stat(landedB);
      const umask = process.umask(0o022); // read this process's umask (and put it straight back)
      process.umask(umask);
      expect(st.mode & 0o777).toBe(0o644 & ~umask);
      expect(Math.abs(st.mtimeMs - MTIME_MS)).toBeLessThan(1);
    });

    it('a dotfile keeps its dot: ".env" lands at ".env (1)"', async () => {
      const target = path.join(tmp.path, '.env');
      await fs.writeFile(target, 'SECRET=old\n');
      const part = await finished('.env', Buffer.from('SECRET=new\n'));
      expect(await part.commit(target, 'keep-both')).toBe(path.join(tmp.path, '.env (1)'));
      expect(await fs.readFile(target, 'utf8')).toBe('SECRET=old\n');
      expect(await fs.readFile(path.join(tmp.path, '.env (1)'), 'utf8')).toBe('SECRET=new\n');
      expect((await fs.readdir(tmp.path)).sort()).toEqual(['.env', '.env (1)']);
    });

    it('skips every alternative that is taken, whatever it is: a file, a folder, a dangling symlink', async () => {
      const outside = await dir({ unsafeCleanup: true });
      try {
        const victim = path.join(outside.path, 'victim');
        await fs.writeFile(path.join(tmp.path, 'y.txt'), 'zero');
        await fs.mkdir(path.join(tmp.path, 'y (1).txt'));
        await fs.symlink(victim, path.join(tmp.path, 'y (2).txt')); // dangling: a write through it would create victim
        await fs.writeFile(path.join(tmp.path, 'y (4).txt'), 'four');
        const part = await finished('y.txt', Buffer.from('new'));
        const landed = await part.commit(path.join(tmp.path, 'y.txt'), 'keep-both');
        expect(landed).toBe(path.join(tmp.path, 'y (3).txt'));
        expect(await fs.readFile(landed, 'utf8')).toBe('new');
        expect(await exists(victim)).toBe(false);
        expect((await fs.lstat(path.join(tmp.path, 'y (2).txt'))).isSymbolicLink()).toBe(true);
        expect((await fs.stat(path.join(tmp.path, 'y (1).txt'))).isDirectory()).toBe(true);
        expect(await fs.readFile(path.join(tmp.path, 'y.txt'), 'utf8')).toBe('zero');
        expect(await fs.readFile(path.join(tmp.path, 'y (4).txt'), 'utf8')).toBe('four');
      } finally {
        await outside.cleanup();
      }
    });

    it('when every alternative is taken: E_EXISTS after name (10000), nothing replaced, the part kept until discard()', async () => {
      // Real files for the name and its 10,000 alternatives (empty, so quick to make).
      const taken = ['full.bin', ...Array.from({ length: 10_000 }, (_, i) => `full (${i + 1}).bin`)];
      for (const name of taken) fsSync.closeSync(fsSync.openSync(path.join(tmp.path, name), 'wx'));
      const part = await finished('full.bin', Buffer.from('new'));
      const err = await rejection(part.commit(path.join(tmp.path, 'full.bin'), 'keep-both'));
      expect(err.code).toBe('E_EXISTS');
      expect(err.message).toBe('no free name for full.bin after 10000 tries');
      expect(await fs.readFile(part.path, 'utf8')).toBe('new');
      const names = await fs.readdir(tmp.path);
      expect(names).toHaveLength(taken.length + 1);
      const takenSet = new Set(taken);
      expect(names.filter((n) => !takenSet.has(n))).toEqual([path.basename(part.path)]);
      for (const name of ['full.bin', 'full (1).bin', 'full (9999).bin', 'full (10000).bin']) expect((await fs.stat(path.join(tmp.path, name))).size).toBe(0);
      await part.discard();
      expect(await exists(part.path)).toBe(false);
    });

    it('the folder is synced through syncDir, once, after the file landed', async () => {
      const target = path.join(tmp.path, 'synced.bin');
      await fs.writeFile(target, 'old');
      const part = await finished('synced.bin', Buffer.from('new'));
      const synced: Array<{ dir: string; landed: boolean }> = [];
      const landed = await part.commit(target, 'keep-both', async (d) => {
        synced.push({ dir: d, landed: await exists(path.join(tmp.path, 'synced (1).bin')) });
      });
      expect(landed).toBe(path.join(tmp.path, 'synced (1).bin'));
      expect(synced).toEqual([{ dir: tmp.path, landed: true }]);
    });
  });

  describe('createSync', () => {
    it('creates an empty .sockxfer-*.part beside the target, mode 0600, like create()', async () => {
      const part = PartFile.createSync(tmp.path, 'sync.bin');
      parts.push(part);
      expect(path.dirname(part.path)).toBe(tmp.path);
      expect(path.basename(part.path)).toMatch(/^\.sockxfer-[0-9a-f]{12}-sync\.bin\.part$/);
      const st = await fs.lstat(part.path);
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.size).toBe(0);
      // And it works as one: written, finished, committed.
      const data = seededBytes(70_000, 44);
      await writeShuffled(part, data, 4096, 45);
      await part.finish(0o640, MTIME_MS);
      const target = path.join(tmp.path, 'sync.bin');
      expect(await part.commit(target)).toBe(target);
      expect((await fs.readFile(target)).equals(data)).toBe(true);
      expect(await fs.readdir(tmp.path)).toEqual(['sync.bin']);
    });

    it('opens with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600, the same flags as create()', async () => {
      const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fsSync.constants;
      const openSync = vi.spyOn(fsSync, 'openSync');
      const open = vi.spyOn(fsSync, 'open');
      try {
        parts.push(PartFile.createSync(tmp.path, 'flags'));
        parts.push(await PartFile.create(tmp.path, 'flags'));
        expect(openSync).toHaveBeenCalledTimes(1);
        expect(openSync.mock.calls[0]!.slice(1)).toEqual([O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600]);
        expect(open).toHaveBeenCalledTimes(1);
        expect(open.mock.calls[0]!.slice(1, 3)).toEqual([O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600]);
      } finally {
        openSync.mockRestore();
        open.mockRestore();
      }
    });

    it('never opens an existing path: on EEXIST it tries a new random name', async () => {
      const realOpenSync = fsSync.openSync;
      const tried: string[] = [];
      const openSync = vi.spyOn(fsSync, 'openSync').mockImplementation(((p: fsSync.PathLike, flags: number, mode: number) => {
        tried.push(String(p));
        // The first name "exists": as O_EXCL reports it.
        if (tried.length === 1) throw Object.assign(new Error(`EEXIST: file already exists, open '${String(p)}'`), { code: 'EEXIST' });
        return realOpenSync(p, flags, mode);
      }) as typeof fsSync.openSync);
      try {
        const part = PartFile.createSync(tmp.path, 'retry');
        parts.push(part);
        expect(tried).toHaveLength(2);
        expect(tried[1]).not.toBe(tried[0]);
        expect(part.path).toBe(tried[1]);
        expect(await fs.readdir(tmp.path)).toEqual([path.basename(part.path)]);
      } finally {
        openSync.mockRestore();
      }
    });

    it('in a folder that does not exist throws E_NOT_FOUND at once', () => {
      let thrown: unknown;
      try {
        PartFile.createSync(path.join(tmp.path, 'no', 'such'), 'x');
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(SockxferError);
      expect((thrown as SockxferError).code).toBe('E_NOT_FOUND');
      expect((thrown as SockxferError).message).toMatch(/cannot create a temporary file/);
    });

    it('shortens a long multi-byte name on a whole character, as create() does', async () => {
      const name = '📄'.repeat(63) + 'abc';
      const part = PartFile.createSync(tmp.path, name);
      parts.push(part);
      const base = path.basename(part.path);
      expect(Buffer.byteLength(base)).toBeLessThanOrEqual(255);
      expect(base).not.toContain('\uFFFD');
      expect(base.endsWith(PART_SUFFIX)).toBe(true);
    });
  });

  it.each([
    ['x.bin', 1, 'x (1).bin'],
    ['x.bin', 2, 'x (2).bin'],
    ['x.bin', 10_000, 'x (10000).bin'],
    ['README', 1, 'README (1)'],
    ['.env', 1, '.env (1)'],
    ['.env', 2, '.env (2)'],
    ['.config.json', 1, '.config (1).json'],
    ['archive.tar.gz', 1, 'archive.tar (1).gz'],
    ['résumé 📄.pdf', 3, 'résumé 📄 (3).pdf'],
    ['two words.txt', 1, 'two words (1).txt'],
  ] as const)('alternativeName(%j, %i) is %j', (base, n, expected) => {
    expect(alternativeName(base, n)).toBe(expected);
  });

  it('write() asks the caller to wait once PENDING_HIGH_WATER bytes are queued, and all of it lands', async () => {
    const part = await create('big.bin');
    const block = seededBytes(PENDING_HIGH_WATER / 8, 11);
    const waits: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      const wait = part.write(i * block.length, [block], block.length);
      waits.push(wait !== undefined);
      if (wait) await wait;
    }
    // Writes finish asynchronously, so the first seven eighths are queued without a wait and the eighth write hits the mark.
    expect(waits.slice(0, 8)).toEqual([false, false, false, false, false, false, false, true]);
    await part.finish(0o600, MTIME_MS);
    const st = await fs.stat(part.path);
    expect(st.size).toBe(10 * block.length);
    const fh = await fs.open(part.path, 'r');
    try {
      const back = Buffer.alloc(block.length);
      await fh.read(back, 0, back.length, 9 * block.length);
      expect(back.equals(block)).toBe(true);
    } finally {
      await fh.close();
    }
  });


  it('a small run of writes, waiting for more to join it, still reaches the file without finish()', async () => {
    const part = await create('held.bin');
    const data = seededBytes(20 * SMALL, 12);
    // The file changes on disk (inotify) only when the held run is written: no finish(), no sleep.
    const changed = new Promise<void>((resolve) => {
      const watcher = fsSync.watch(part.path, () => {
        watcher.close();
        resolve();
      });
    });
    // Queued in one go, they form one run, far below the size that is written at once.
    for (const off of chunkOffsets(data.length, SMALL)) {
      expect(part.write(off, [data.subarray(off, off + SMALL)], SMALL)).toBeUndefined();
    }
    await changed;
    // The run went out whole, in one write, once it had waited its time.
    expect((await fs.readFile(part.path)).equals(data)).toBe(true);
  });
  it('discard removes an unfinished part file, with writes still queued', async () => {
    const part = await create('abandoned');
    part.write(0, [seededBytes(256 * 1024, 3)], 256 * 1024);
    part.write(1024 * 1024, [seededBytes(1000, 4)], 1000);
    await part.discard();
    expect(await fs.readdir(tmp.path)).toEqual([]);
    // A second discard is harmless.
    await part.discard();
  });

  it('discard after finish removes the part file', async () => {
    const part = await create('finished-then-dropped');
    part.write(0, [Buffer.from('abc')], 3);
    await part.finish(0o644, MTIME_MS);
    await part.discard();
    expect(await fs.readdir(tmp.path)).toEqual([]);
  });

  it('create() in a folder that does not exist fails with E_NOT_FOUND', async () => {
    const err = await rejection(PartFile.create(path.join(tmp.path, 'no', 'such', 'dir'), 'x'));
    expect(err.code).toBe('E_NOT_FOUND');
    expect(err.message).toMatch(/cannot create a temporary file/);
  });

  it('create() takes an ASCII name of 255 bytes (the part name is shortened)', async () => {
    const part = await create('a'.repeat(255));
    expect(Buffer.byteLength(path.basename(part.path))).toBeLessThanOrEqual(255);
    part.write(0, [Buffer.from('x')], 1);
    await part.finish(0o600, MTIME_MS);
    const target = path.join(tmp.path, 'a'.repeat(255));
    await part.commit(target, 'refuse');
    expect(await fs.readFile(target, 'utf8')).toBe('x');
  });

  it.each([
    ['127 × "é" (254 bytes)', 'é'.repeat(127)],
    ['85 × "€" (255 bytes)', '€'.repeat(85)],
    ['63 emoji and 3 ASCII (255 bytes)', '📄'.repeat(63) + 'abc'],
    ['216 ASCII then an emoji', 'a'.repeat(216) + '📄x'],
  ])('create() takes a long name of multi-byte characters: %s', async (_what, name) => {
    const part = await create(name);
    const base = path.basename(part.path);
    expect(Buffer.byteLength(base)).toBeLessThanOrEqual(255);
    // Cut on a whole character: no replacement character from a split surrogate pair.
    expect(base).not.toContain('\uFFFD');
    expect(base.endsWith(PART_SUFFIX)).toBe(true);
    expect((await fs.readdir(tmp.path))).toEqual([base]);
    part.write(0, [Buffer.from('x')], 1);
    await part.finish(0o600, MTIME_MS);
    await part.commit(path.join(tmp.path, name), 'refuse');
    expect(await fs.readdir(tmp.path)).toEqual([name]);
  });

  describe('small writes (queued and merged into fewer pwritevs)', () => {
    /** Finishes `part` and expects its bytes to be exactly `data`. */
    async function expectContents(part: PartFile, data: Buffer): Promise<void> {
      await part.finish(0o600, MTIME_MS);
      const back = await fs.readFile(part.path);
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);
    }

    it('many small chunks in order give the exact bytes', async () => {
      const data = seededBytes(4 * 1024 * 1024 + 77, 21);
      const part = await create('in-order.bin');
      await writeChunks(part, data, SMALL, chunkOffsets(data.length, SMALL));
      await expectContents(part, data);
    });

    it('small chunks in a shuffled order give the exact bytes', async () => {
      const data = seededBytes(2 * 1024 * 1024 + 999, 22);
      const part = await create('shuffled.bin');
      await writeShuffled(part, data, SMALL, 23);
      await expectContents(part, data);
    });

    it('small chunks mostly in order, a few swapped with a later one, give the exact bytes', async () => {
      const data = seededBytes(2 * 1024 * 1024 + 5, 24);
      const offsets = chunkOffsets(data.length, SMALL);
      const rand = mulberry32(25);
      for (let i = 0; i < offsets.length - 40; i++) {
        if (rand() < 0.03) {
          const j = i + 1 + Math.floor(rand() * 32);
          [offsets[i], offsets[j]] = [offsets[j]!, offsets[i]!];
        }
      }
      const part = await create('nearly-in-order.bin');
      await writeChunks(part, data, SMALL, offsets);
      await expectContents(part, data);
    });

    it('small chunks in order with gaps, the gaps filled later in any order, give the exact bytes', async () => {
      const data = seededBytes(3 * 1024 * 1024 + 321, 26);
      const offsets = chunkOffsets(data.length, SMALL);
      const rand = mulberry32(27);
      const first: number[] = [];
      const later: number[] = [];
      for (let i = 0; i < offsets.length; i++) {
        // Single lost chunks, a lost burst of ten, and the very first and last chunks.
        const lost = rand() < 0.08 || (i >= 500 && i < 510) || i === 0 || i === offsets.length - 1;
        (lost ? later : first).push(offsets[i]!);
      }
      for (let i = later.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [later[i], later[j]] = [later[j]!, later[i]!];
      }
      const part = await create('gaps.bin');
      await writeChunks(part, data, SMALL, first);
      await writeChunks(part, data, SMALL, later);
      await expectContents(part, data);
    });

    it('more than 1024 contiguous pieces queued at once: merged, at most 1024 buffers per pwritev, the exact bytes', async () => {
      // 3000 writes of two pieces each, of uneven sizes, all queued before any completes; then
      // one write of 2500 pieces, more than one pwritev takes (the thread pool splits it).
      const sizes: number[] = [];
      const rand = mulberry32(28);
      for (let i = 0; i < 3000; i++) sizes.push(20 + Math.floor(rand() * 200));
      const tailPieces = 2500;
      const total = sizes.reduce((a, b) => a + b, 0) + tailPieces * 7;
      const data = seededBytes(total, 29);
      const part = await create('many-pieces.bin');
      // Counts the pwritevs and their buffers; the real fs.writev still does the writing.
      const writev = vi.spyOn(fsSync, 'writev');
      try {
        let off = 0;
        for (const size of sizes) {
          const cut = Math.floor(size / 2);
          expect(part.write(off, [data.subarray(off, off + cut), data.subarray(off + cut, off + size)], size)).toBeUndefined();
          off += size;
        }
        const pieces: Buffer[] = [];
        for (let i = 0; i < tailPieces; i++) pieces.push(data.subarray(off + i * 7, off + i * 7 + 7));
        expect(part.write(off, pieces, tailPieces * 7)).toBeUndefined();
        await expectContents(part, data);
        const buffers = writev.mock.calls.map((call) => (call[1] as readonly unknown[]).length);
        // 3001 writes, 8500 buffers: two writes went out alone, the rest in runs of at most 1024 buffers.
        expect(buffers.reduce((a, b) => a + b, 0)).toBe(3000 * 2 + tailPieces);
        expect(buffers.length).toBeLessThan(20);
        expect(buffers.filter((n) => n > 1024)).toEqual([tailPieces]);
        expect(buffers.filter((n) => n === 1024).length).toBeGreaterThanOrEqual(5);
      } finally {
        writev.mockRestore();
      }
    });

    it('merged writes that the kernel writes only in part are continued where it stopped', async () => {
      // The real fs.writev writes, but is handed only about 40% of each call's bytes (cut inside
      // a buffer), as a pwritev may do on a full disk or a signal.
      const realWritev = fsSync.writev;
      const short = vi.spyOn(fsSync, 'writev').mockImplementation(((fd: number, buffers: readonly NodeJS.ArrayBufferView[], position: number | null, cb: (err: NodeJS.ErrnoException | null, written: number) => void) => {
        let budget = Math.max(1, Math.floor(buffers.reduce((n, b) => n + b.byteLength, 0) * 0.4));
        const prefix: NodeJS.ArrayBufferView[] = [];
        for (const b of buffers) {
          if (budget === 0) break;
          const take = Math.min(budget, b.byteLength);
          prefix.push(take === b.byteLength ? b : new Uint8Array(b.buffer, b.byteOffset, take));
          budget -= take;
        }
        realWritev.call(fsSync, fd, prefix, position, cb);
      }) as unknown as typeof fsSync.writev);
      try {
        const data = seededBytes(900 * SMALL + 31, 31);
        const offsets = chunkOffsets(data.length, SMALL);
        // In order with every tenth chunk held back, then those: merged runs and lone chunks.
        const part = await create('short-writes.bin');
        await writeChunks(part, data, SMALL, offsets.filter((_, i) => i % 10 !== 5));
        await writeChunks(part, data, SMALL, offsets.filter((_, i) => i % 10 === 5));
        await expectContents(part, data);
        expect(short.mock.calls.length).toBeGreaterThan(offsets.length / 10);
      } finally {
        short.mockRestore();
      }
    });

    it('write() still asks the caller to wait once PENDING_HIGH_WATER bytes of small chunks are queued, and all of it lands', async () => {
      const data = seededBytes(PENDING_HIGH_WATER + 1024 * 1024 + 17, 30);
      const offsets = chunkOffsets(data.length, SMALL);
      const part = await create('small-backpressure.bin');
      let i = 0;
      let wait: Promise<void> | undefined;
      // Writes complete asynchronously, so nothing lands during this loop: the wait comes exactly at the mark.
      for (; i < offsets.length && wait === undefined; i++) {
        const off = offsets[i]!;
        wait = part.write(off, [data.subarray(off, off + SMALL)], Math.min(SMALL, data.length - off));
      }
      expect(wait).toBeInstanceOf(Promise);
      expect(i).toBe(Math.ceil(PENDING_HIGH_WATER / SMALL));
      await wait;
      await writeChunks(part, data, SMALL, offsets.slice(i));
      await expectContents(part, data);
    });
  });
});
