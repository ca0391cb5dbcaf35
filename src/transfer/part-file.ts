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

/** pwrite of all of `data` at `position`, continuing after short writes. */
function writeAll(fd: number, data: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) =>
      fs.write(fd, data, done, data.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        if (done + n >= data.length) return resolve();
        if (n === 0) return reject(Object.assign(new Error('short write'), { code: 'EIO' }));
        step(done + n);
      });
    step(0);
  });
}

/** Bytes of queued writes before write() asks the caller to wait. */
const PENDING_HIGH_WATER = 32 * 1024 * 1024;
const PENDING_LOW_WATER = 16 * 1024 * 1024;

/** Prefix and suffix of temporary files, so a person can tell what left them. */
export const PART_PREFIX = '.sockxfer-';
export const PART_SUFFIX = '.part';

function ioError(err: unknown, what: string): SockxferError {
  const e = toSockxferError(err, 'E_IO');
  return new SockxferError(e.code === 'E_INTERNAL' ? 'E_IO' : e.code, `${what}: ${(err as Error).message}`, { cause: err });
}

export class PartFile {
  private pending = 0;
  private failure: SockxferError | null = null;
  private waiters: Array<() => void> = [];
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  /** Creates a new temporary file in `dir` for `name`; O_EXCL, so it can never be an existing file or link. */
  static async create(dir: string, name: string): Promise<PartFile> {
    for (let attempt = 0; ; attempt++) {
      const p = path.join(dir, `${PART_PREFIX}${randomBytes(6).toString('hex')}-${name}`.slice(0, 240) + PART_SUFFIX);
      try {
        const fd = await promisify(fs.open)(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
        return new PartFile(p, fd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 5) continue;
        throw ioError(err, `cannot create a temporary file in ${dir}`);
      }
    }
  }

  /**
   * Writes `data` at `position`. Returns a promise when too many bytes are queued (await it
   * before writing more), undefined otherwise. A failed write surfaces here or in finish().
   */
  write(position: number, data: Buffer): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    this.pending += data.length;
    writeAll(this.fd, data, position).then(
      () => this.settle(data.length),
      (err) => {
        this.failure ??= ioError(err, `cannot write ${this.path}`);
        this.settle(data.length);
      },
    );
    if (this.pending < PENDING_HIGH_WATER) return undefined;
    return this.waitBelow(PENDING_LOW_WATER);
  }

  private settle(bytes: number): void {
    this.pending -= bytes;
    for (const w of this.waiters.splice(0)) w();
  }

  private async waitBelow(limit: number): Promise<void> {
    while (this.pending > limit) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure;
  }

  /** Waits for every queued write, sets mode and mtime, fsyncs and closes. */
  async finish(mode: number, mtimeMs: number): Promise<void> {
    await this.waitBelow(0);
    try {
      await promisify(fs.fchmod)(this.fd, mode & 0o777);
      const mtime = mtimeMs / 1000;
      await promisify(fs.futimes)(this.fd, mtime, mtime);
      await promisify(fs.fsync)(this.fd);
    } catch (err) {
      throw ioError(err, `cannot finish ${this.path}`);
    }
    await this.close();
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await promisify(fs.close)(this.fd);
  }

  /**
   * Moves the finished file to `target` in one step and fsyncs the folder. Without `overwrite`
   * it links then unlinks, which fails with E_EXISTS rather than replace a file that appeared.
   */
  async commit(target: string, overwrite: boolean): Promise<void> {
    try {
      if (overwrite) {
        await fs.promises.rename(this.path, target);
      } else {
        await fs.promises.link(this.path, target);
        await fs.promises.unlink(this.path);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new SockxferError('E_EXISTS', `${path.basename(target)} appeared in the target folder during the transfer; not overwritten`);
      }
      throw ioError(err, `cannot move the received file to ${target}`);
    }
    await fsyncDirectory(path.dirname(target));
  }

  /** Closes and removes the temporary file; never throws. */
  async discard(): Promise<void> {
    await this.waitBelow(0).catch(() => {});
    await this.close().catch(() => {});
    await fs.promises.unlink(this.path).catch(() => {});
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
