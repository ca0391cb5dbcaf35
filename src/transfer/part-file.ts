/**
 * The temporary file a transfer writes into: created exclusively beside the target, written at
 * chunk offsets, fsynced, then moved to the final name in one step. The final name never holds
 * a partial or unverified file.
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { SockxferError, toSockxferError } from '../errors.js';
import { RangeSet } from './range-set.js';

/** pwritev of all of `pieces` at `position`, continuing after short writes. Leaves `pieces` as it is. */
function writeAll(fd: number, pieces: Buffer[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (rest: Buffer[], at: number) =>
      fs.writev(fd, rest, at, (err, n) => {
        if (err) return reject(err);
        let done = 0;
        let skip = n;
        while (done < rest.length && skip >= rest[done]!.length) skip -= rest[done++]!.length;
        if (done === rest.length) return resolve();
        if (n === 0) return reject(Object.assign(new Error('short write'), { code: 'EIO' }));
        const next = rest.slice(done);
        next[0] = next[0]!.subarray(skip);
        step(next, at + n);
      });
    step(pieces, position);
  });
}

/** Bytes of queued writes before write() asks the caller to wait. */
export const PENDING_HIGH_WATER = 8 * 1024 * 1024;
const PENDING_LOW_WATER = 4 * 1024 * 1024;
/**
 * pwritevs in the thread pool at once; later writes queue and merge. Measured with 1 MiB and
 * 1428-byte chunks: 1 leaves the disk idle between writes, 3 or 4 gain nothing and vary more.
 */
const MAX_IN_FLIGHT = 2;
/** Most buffers in one pwritev (IOV_MAX on Linux) and most bytes, when queued writes are merged. */
const MAX_RUN_PIECES = 1024;
const MAX_RUN_BYTES = 8 * 1024 * 1024;
/**
 * The newest run waits, while smaller than MIN_WRITE_BYTES, up to MAX_HOLD_MS for writes that
 * extend it (see pump()). Measured with 1428-byte UDP chunks: a pwritev per turn of the event loop
 * (about 45 KB) costs 5,700 thread-pool round trips per 256 MiB, and the receiver's main thread
 * spent a sixth of its time handing them over.
 */
const MIN_WRITE_BYTES = 1024 * 1024;
const MAX_HOLD_MS = 20;
/** Bytes written between background fdatasyncs (see syncInBackground). */
const SYNC_EVERY = 64 * 1024 * 1024;
/**
 * A resumable file also syncs after this long with at least RESUME_SYNC_BYTES unsynced, so that
 * its journal (what survives a kill -9) trails the data by a fraction of a second at most.
 */
const RESUME_SYNC_MS = 100;
const RESUME_SYNC_BYTES = 1024 * 1024;

/** Prefix and suffix of temporary files, so a person can tell what left them. */
export const PART_PREFIX = '.sockxfer-';
export const PART_SUFFIX = '.part';

/**
 * This process's umask, read without changing it (process.umask() with no argument is
 * deprecated): a sender chooses permission bits, but never more than the receiver's umask allows.
 */
function readUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return parseInt(m[1]!, 8);
  } catch {
    // not Linux: fall through to the common default
  }
  return 0o022;
}

export const UMASK = readUmask();

/** Bytes of the target's name kept in a temporary file's name, so it stays within NAME_MAX (255). */
const PART_NAME_BYTES = 255 - PART_PREFIX.length - 12 - 1 - PART_SUFFIX.length;
const PART_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
/** Names tried by keep-both: `name (1).ext` up to this. */
const MAX_ALTERNATIVES = 10_000;

function partPath(dir: string, name: string): string {
  return path.join(dir, `${PART_PREFIX}${randomBytes(6).toString('hex')}-${truncateUtf8(name, PART_NAME_BYTES)}${PART_SUFFIX}`);
}

/** `name (1).ext`, `name (2).ext`, …: the n-th alternative for a name already taken (a dotfile keeps its dot: `.env (1)`). */
export function alternativeName(base: string, n: number): string {
  const ext = path.extname(base);
  return ext === '' ? `${base} (${n})` : `${base.slice(0, -ext.length)} (${n})${ext}`;
}

/** The longest prefix of `s` of at most `max` UTF-8 bytes that ends on a whole character. */
function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

function ioError(err: unknown, what: string): SockxferError {
  const e = toSockxferError(err, 'E_IO');
  return new SockxferError(e.code === 'E_INTERNAL' ? 'E_IO' : e.code, `${what}: ${(err as Error).message}`, { cause: err });
}

/**
 * Throws when `dir` is a symbolic link: a file in progress is never created, moved or removed
 * through a link that a local user put in place of the receiver's folder (say, during a transfer).
 * Open and link resolve the path again a moment later; this makes that moment microseconds, and
 * commit() checks the file it moves is still the one it wrote (see displaced()).
 */
function assertNotLink(dir: string): void {
  let link = false;
  try {
    link = fs.lstatSync(dir, { throwIfNoEntry: false })?.isSymbolicLink() ?? false;
  } catch {
    // cannot look: the open that follows says why
  }
  if (link) throw linkError(dir);
}

function linkError(dir: string): SockxferError {
  return new SockxferError('E_BAD_NAME', `${path.basename(dir)} became a symbolic link in the target folder during the transfer; sockxfer does not write through links`);
}

/** Queued writes that follow one another in the file, to go out as one pwritev. */
interface Run {
  position: number;
  pieces: Buffer[];
  length: number;
  /** performance.now() when it was queued. */
  since: number;
  /** The writes' release callbacks (lent pieces), called once the run is written or dropped. */
  releases: Array<() => void> | null;
}

function release(run: Run): void {
  if (run.releases === null) return;
  for (const r of run.releases) r();
  run.releases = null;
}

export class PartFile {
  /** Bytes accepted by write() and not yet written (queued or in flight). */
  private pending = 0;
  /** Writes waiting for a slot, oldest first, from `head` on; and the queued run ending at each offset (all but the newest). */
  private queue: Run[] = [];
  private head = 0;
  private byEnd = new Map<number, Run>();
  private inFlight = 0;
  private pumpScheduled = false;
  /** Wakes pump() when the newest run has waited MAX_HOLD_MS. */
  private holdTimer: NodeJS.Timeout | null = null;
  /** Someone waits for every queued byte: nothing is held back any more. */
  private draining = false;
  private failure: SockxferError | null = null;
  private waiters: Array<() => void> = [];
  private closed = false;
  /** Bytes written since the last background fdatasync started, and that sync while it runs. */
  private unsynced = 0;
  private syncing: Promise<void> | null = null;
  private lastSyncAt = performance.now();
  /** Byte ranges whose writes have completed, and (for resumable files) those known durable. */
  private readonly completed = new RangeSet();
  /** Called after each fdatasync with the ranges it made durable (the resume journal). */
  private onDurable: ((ranges: Array<[number, number]>) => Promise<void>) | null = null;

  /** Device and inode of the file this writes: what `path` must still name when it is moved into place. */
  private readonly dev: number;
  private readonly ino: number;

  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {
    const st = fs.fstatSync(fd);
    this.dev = st.dev;
    this.ino = st.ino;
  }

  /**
   * Why `path` no longer names the file this wrote (its folder became a link, it was replaced or
   * removed), or null when it still does. Two lstat calls: cheap enough before every move.
   */
  private displaced(): SockxferError | null {
    const dir = path.dirname(this.path);
    try {
      if (fs.lstatSync(dir).isSymbolicLink()) return linkError(dir);
      const st = fs.lstatSync(this.path);
      if (st.isFile() && st.dev === this.dev && st.ino === this.ino) return null;
    } catch {
      // gone
    }
    return new SockxferError('E_IO', `the file in progress ${this.path} was moved or replaced during the transfer; not committed`);
  }

  /** Creates a new temporary file in `dir` for `name`; O_EXCL, so it can never be an existing file or link. */
  static async create(dir: string, name: string): Promise<PartFile> {
    assertNotLink(dir);
    for (let attempt = 0; ; attempt++) {
      const p = partPath(dir, name);
      try {
        const fd = await promisify(fs.open)(p, PART_FLAGS, 0o600);
        return new PartFile(p, fd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 5) continue;
        throw ioError(err, `cannot create a temporary file in ${dir}`);
      }
    }
  }

  /**
   * Opens an existing temporary file to go on writing it (a resumed transfer). `held` are the byte
   * ranges known durable in it; `onDurable` is told the ranges each later fdatasync made durable.
   */
  static resume(p: string, held: Array<[number, number]>, onDurable: (ranges: Array<[number, number]>) => Promise<void>): PartFile {
    assertNotLink(path.dirname(p));
    let fd: number;
    try {
      fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      throw ioError(err, `cannot reopen ${p}`);
    }
    // O_NOFOLLOW stops a symbolic link, not a hard link: a file with another name elsewhere is
    // not ours to write the missing chunks into (readJournal checks this too; this closes the race).
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.nlink !== 1) {
      fs.closeSync(fd);
      throw new SockxferError('E_IO', `cannot resume ${p}: it is not a file of its own (${st.isFile() ? `${st.nlink} links` : 'not a regular file'})`);
    }
    const part = new PartFile(p, fd);
    for (const [a, b] of held) part.completed.addRange(a, b);
    part.onDurable = onDurable;
    return part;
  }

  /** Creates the temporary file at exactly `p` (a resumable one), replacing a stale file of that name. */
  static createAtSync(p: string): PartFile {
    assertNotLink(path.dirname(p));
    for (let attempt = 0; ; attempt++) {
      try {
        return new PartFile(p, fs.openSync(p, PART_FLAGS, 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt === 0) {
          try {
            fs.unlinkSync(p);
          } catch {
            // gone already, or not ours to remove: the next open says which
          }
          continue;
        }
        throw ioError(err, `cannot create ${p}`);
      }
    }
  }

  /** Makes this file resumable: `onDurable` is told, after each fdatasync, the ranges it made durable. */
  trackDurable(onDurable: (ranges: Array<[number, number]>) => Promise<void>): void {
    this.onDurable = onDurable;
  }

  /**
   * Keeps the file for a later resume instead of discarding it: waits for queued writes, fsyncs,
   * reports what is durable, closes. Never throws; returns false when nothing could be kept.
   */
  async suspend(): Promise<boolean> {
    await this.waitBelow(0).catch(() => {});
    await this.syncing;
    let ok = !this.closed;
    if (ok) {
      try {
        await promisify(fs.fdatasync)(this.fd);
        if (this.onDurable) await this.onDurable(this.completed.ranges());
      } catch {
        ok = false;
      }
    }
    await this.close().catch(() => {});
    return ok;
  }

  /**
   * As create(), on the calling thread: one open(2) costs microseconds, less than a trip through
   * the thread pool, and a sender of many small files should not wait for one per file.
   */
  static createSync(dir: string, name: string): PartFile {
    assertNotLink(dir);
    for (let attempt = 0; ; attempt++) {
      const p = partPath(dir, name);
      try {
        return new PartFile(p, fs.openSync(p, PART_FLAGS, 0o600));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 5) continue;
        throw ioError(err, `cannot create a temporary file in ${dir}`);
      }
    }
  }

  /**
   * Writes `pieces` (`length` bytes in all) at `position`. Returns a promise when too many bytes are queued (await it
   * before writing more), undefined otherwise. A failed write surfaces here or in finish().
   *
   * At most MAX_IN_FLIGHT pwritevs run at once; later writes queue, and a write that starts where a
   * queued one ends joins it, so a stream of small in-order chunks costs few syscalls. Writes must
   * not overlap: overlapping ones land in no particular order.
   *
   * `onWritten` is called once no reference to `pieces` remains here: written, or dropped after a
   * failure. (Lent buffers go back to their pool then; a file closed with writes queued never calls it.)
   */
  write(position: number, pieces: Buffer[], length: number, onWritten?: () => void): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    this.pending += length;
    this.enqueue(position, pieces, length, onWritten);
    this.schedulePump();
    if (this.pending < PENDING_HIGH_WATER) return undefined;
    return this.waitBelow(PENDING_LOW_WATER);
  }

  private enqueue(position: number, pieces: Buffer[], length: number, onWritten: (() => void) | undefined): void {
    const fits = (run: Run) => run.pieces.length + pieces.length <= MAX_RUN_PIECES && run.length + length <= MAX_RUN_BYTES;
    const append = (run: Run) => {
      for (const piece of pieces) run.pieces.push(piece);
      run.length += length;
      if (onWritten !== undefined) (run.releases ??= []).push(onWritten);
    };
    // The newest run is kept out of byEnd: chunks mostly arrive in order and extend it, and
    // that should cost no map operations.
    const last = this.head < this.queue.length ? this.queue[this.queue.length - 1]! : undefined;
    if (last && last.position + last.length === position && fits(last)) {
      append(last);
      return;
    }
    const run = this.byEnd.get(position);
    if (run && fits(run)) {
      this.byEnd.delete(position);
      append(run);
      this.byEnd.set(run.position + run.length, run);
      return;
    }
    if (last) this.byEnd.set(last.position + last.length, last);
    this.queue.push({ position, pieces: pieces.slice(), length, since: performance.now(), releases: onWritten === undefined ? null : [onWritten] });
  }

  private dequeue(): Run | undefined {
    if (this.head === this.queue.length) return undefined;
    const run = this.queue[this.head++]!;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    const end = run.position + run.length;
    if (this.byEnd.get(end) === run) this.byEnd.delete(end);
    return run;
  }

  /**
   * Starts the queued runs after the current turn of the event loop rather than at once: chunks
   * that arrive together (a UDP receiver gets up to 32 datagrams per turn) then go out as one
   * pwritev even while a write slot is free.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * Starts queued runs while a slot is free; after a failure, drops them instead. The newest run,
   * while small and young, waits for the writes that extend it: small UDP chunks then go out in
   * pwritevs of a megabyte, not of a turn's worth. It goes out when it is MAX_HOLD_MS old, or when
   * someone waits for the queue to empty.
   */
  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT) {
      if (this.head === this.queue.length - 1 && !this.draining && !this.failure) {
        const tail = this.queue[this.head]!;
        const wait = tail.since + MAX_HOLD_MS - performance.now();
        if (tail.length < MIN_WRITE_BYTES && tail.pieces.length < MAX_RUN_PIECES && wait > 0) {
          this.holdTimer ??= setTimeout(() => {
            this.holdTimer = null;
            this.pump();
          }, Math.ceil(wait));
          return;
        }
      }
      const run = this.dequeue();
      if (!run) return;
      if (this.failure) {
        this.pending -= run.length;
        release(run);
        this.wake();
        continue;
      }
      this.inFlight++;
      writeAll(this.fd, run.pieces, run.position).then(
        () => this.written(run, true),
        (err) => {
          this.failure ??= ioError(err, `cannot write ${this.path}`);
          this.written(run, false);
        },
      );
    }
  }

  private written(run: Run, ok: boolean): void {
    this.inFlight--;
    release(run);
    if (ok && this.onDurable) this.completed.addRange(run.position, run.position + run.length);
    this.pump();
    this.settle(run.length);
  }

  private settle(bytes: number): void {
    this.pending -= bytes;
    this.unsynced += bytes;
    if (this.syncing === null && !this.closed && !this.failure) {
      const due = this.unsynced >= SYNC_EVERY || (this.onDurable !== null && this.unsynced >= RESUME_SYNC_BYTES && performance.now() - this.lastSyncAt >= RESUME_SYNC_MS);
      if (due) this.syncInBackground();
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Starts an fdatasync of what is written so far without waiting for it, so the disk works
   * while the network does and the fsync before the commit has little left to flush.
   */
  private syncInBackground(): void {
    this.unsynced = 0;
    this.lastSyncAt = performance.now();
    // What had been written when the sync started is durable when it ends.
    const durable = this.onDurable ? this.completed.ranges() : null;
    this.syncing = promisify(fs.fdatasync)(this.fd).then(
      async () => {
        if (durable && this.onDurable) await this.onDurable(durable).catch(() => {});
        this.syncing = null;
      },
      (err) => {
        this.syncing = null;
        this.failure ??= ioError(err, `cannot write ${this.path}`);
      },
    );
  }

  private async waitBelow(limit: number): Promise<void> {
    if (limit === 0 && this.pending > 0) {
      this.draining = true;
      this.pump();
    }
    while (this.pending > limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure;
  }

  /**
   * Waits for every queued write, sets mode and mtime, fsyncs (unless told not to) and closes. Only the fsync goes to
   * the thread pool: mode, mtime and close are metadata calls of microseconds, and a transfer of
   * thousands of small files should not pay a thread-pool round trip for each.
   */
  async finish(mode: number, mtimeMs: number, fsync = true): Promise<void> {
    await this.waitBelow(0);
    await this.syncing;
    if (this.failure) throw this.failure;
    try {
      fs.fchmodSync(this.fd, mode & 0o777 & ~UMASK);
      // futimes takes float seconds and truncates to nanoseconds: 1600000000.123 would land as
      // .122999999. Half a microsecond more keeps the millisecond exact.
      const mtime = mtimeMs / 1000 + 5e-7;
      fs.futimesSync(this.fd, mtime, mtime);
      // Without fsync the caller makes the data durable another way (a shared syncfs) before commit().
      if (fsync) await promisify(fs.fsync)(this.fd);
    } catch (err) {
      throw ioError(err, `cannot finish ${this.path}`);
    }
    this.closeSync();
  }

  /**
   * Writes `pieces` at `position` at once, on the calling thread: for a small file's only chunk,
   * cheaper than the queue and a trip through the thread pool.
   */
  writeSync(position: number, pieces: Buffer[], length: number): void {
    if (this.failure) throw this.failure;
    try {
      let at = position;
      let rest = pieces;
      while (rest.length > 0) {
        let n = fs.writevSync(this.fd, rest, at);
        if (n === 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
        at += n;
        const next: Buffer[] = [];
        for (const piece of rest) {
          if (n >= piece.length) {
            n -= piece.length;
          } else {
            next.push(n > 0 ? piece.subarray(n) : piece);
            n = 0;
          }
        }
        rest = next;
      }
    } catch (err) {
      this.failure ??= ioError(err, `cannot write ${this.path}`);
      throw this.failure;
    }
    if (this.onDurable) this.completed.addRange(position, position + length);
    this.unsynced += length;
  }

  private closeSync(): void {
    if (this.closed) return;
    this.markClosed();
    fs.closeSync(this.fd);
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.markClosed();
    await promisify(fs.close)(this.fd);
  }

  private markClosed(): void {
    this.closed = true;
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
  }

  /**
   * Moves the finished file to `target` in one step, then fsyncs the folder (through `syncDir`,
   * which may share one fsync among many commits). Returns where the file landed.
   * - overwrite: rename, replacing whatever file is there;
   * - refuse: link then unlink, which fails with E_EXISTS rather than replace a file that appeared;
   * - keep-both: the same, trying `name (1).ext`, `name (2).ext`, … while the name is taken.
   */
  async commit(target: string, policy: 'refuse' | 'overwrite' | 'keep-both' = 'refuse', syncDir: (dir: string) => Promise<void> = fsyncDirectory): Promise<string> {
    // What is moved is what `path` names now: it must still be the file whose bytes were checked.
    const moved = this.displaced();
    if (moved) throw moved;
    let landed = target;
    try {
      // rename, link and unlink are metadata calls of microseconds on a local disk: done here
      // rather than through the thread pool, as finish() does.
      if (policy === 'overwrite') {
        fs.renameSync(this.path, target);
      } else {
        for (let n = 0; ; n++) {
          landed = n === 0 ? target : path.join(path.dirname(target), alternativeName(path.basename(target), n));
          try {
            fs.linkSync(this.path, landed);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || policy === 'refuse' || n >= MAX_ALTERNATIVES) throw err;
          }
        }
        fs.unlinkSync(this.path);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new SockxferError('E_EXISTS', policy === 'refuse' ? `${path.basename(target)} appeared in the target folder during the transfer; not overwritten` : `no free name for ${path.basename(target)} after ${MAX_ALTERNATIVES} tries`);
      }
      throw ioError(err, `cannot move the received file to ${target}`);
    }
    await syncDir(path.dirname(target));
    return landed;
  }

  /** Closes and removes the temporary file; never throws. */
  async discard(): Promise<void> {
    await this.waitBelow(0).catch(() => {});
    await this.syncing;
    await this.close().catch(() => {});
    // Only our own file: not one that took its name through a link (a file elsewhere, not ours to remove).
    if (this.displaced() === null) await fs.promises.unlink(this.path).catch(() => {});
  }
}

/** fsync of the file at `p` (one already closed). */
export async function fsyncFile(p: string): Promise<void> {
  const fd = await promisify(fs.open)(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    await promisify(fs.fsync)(fd);
  } finally {
    await promisify(fs.close)(fd);
  }
}

/** fsync of a folder makes a rename or link in it durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await promisify(fs.open)(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await promisify(fs.fsync)(fd);
  } finally {
    await promisify(fs.close)(fd);
  }
}
