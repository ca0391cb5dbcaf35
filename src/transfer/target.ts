/**
 * Where received entries go: paths under the receiver's folder that never leave it. Every
 * folder on the way to an entry must be a real folder (not a symbolic link), checked with lstat
 * when the offer is planned and again just before a file is moved into place; missing folders
 * are created one level at a time. Folder fsyncs are shared: commits that land in one folder
 * while its fsync runs wait for the next one, so a thousand small files cost a few fsyncs.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { SockxferError, toSockxferError } from '../errors.js';
import { fsyncDirectory } from './part-file.js';
import { printableName } from './names.js';

/** What the receiver does when an offered file already exists. */
export type OverwritePolicy = 'refuse' | 'overwrite' | 'keep-both';

function ioError(err: unknown, what: string): SockxferError {
  const e = toSockxferError(err, 'E_IO');
  return new SockxferError(e.code === 'E_INTERNAL' ? 'E_IO' : e.code, `${what}: ${(err as Error).message}`, { cause: err });
}

/**
 * Makes sure every folder from `root` down to `rel`'s parent exists and is a real folder,
 * creating missing ones (mode 0777 less the umask). Returns the parent's absolute path.
 * `root` itself is trusted (the receiver checked it at start).
 */
export async function ensureParents(root: string, rel: string): Promise<string> {
  const parts = rel.split('/');
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    await ensureDirectory(dir, parts.slice(0, i + 1).join('/'));
  }
  return dir;
}

/** `abs` is a real folder afterwards (created if missing), or this throws. `rel` is for messages. */
export async function ensureDirectory(abs: string, rel: string): Promise<void> {
  let st = await fs.lstat(abs).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? null : Promise.reject(ioError(err, `cannot look at ${printableName(rel)}`))));
  if (st === null) {
    try {
      await fs.mkdir(abs);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(err, `cannot create the folder ${printableName(rel)}`);
      st = await fs.lstat(abs).catch((e) => Promise.reject(ioError(e, `cannot look at ${printableName(rel)}`)));
    }
  }
  if (st === null) throw new SockxferError('E_IO', `cannot create the folder ${printableName(rel)}`);
  if (st.isSymbolicLink()) throw new SockxferError('E_BAD_NAME', `${printableName(rel)} is a symbolic link in the target folder; sockxfer does not write through links`);
  if (!st.isDirectory()) throw new SockxferError('E_EXISTS', `${printableName(rel)} exists in the target folder and is not a folder`);
}

/** Checks (without creating anything) that no folder on the way to `rel` is a link or a file. */
export async function checkParents(root: string, rel: string): Promise<void> {
  const parts = rel.split('/');
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    const st = await fs.lstat(dir).catch(() => null);
    const shown = printableName(parts.slice(0, i + 1).join('/'));
    if (st === null) throw new SockxferError('E_IO', `the folder ${shown} vanished from the target folder during the transfer`);
    if (st.isSymbolicLink()) throw new SockxferError('E_BAD_NAME', `${shown} became a symbolic link in the target folder during the transfer; not written through it`);
    if (!st.isDirectory()) throw new SockxferError('E_EXISTS', `${shown} is not a folder in the target folder`);
  }
}

/** Shared folder fsyncs: `sync(dir)` resolves once an fsync of `dir` that started after the call has finished. */
export class DirectorySyncer {
  private readonly state = new Map<string, { running: Promise<void>; next: Promise<void> | null }>();

  sync(dir: string): Promise<void> {
    const s = this.state.get(dir);
    if (!s) {
      const running = this.run(dir);
      this.state.set(dir, { running, next: null });
      return running;
    }
    // An fsync is running: it may have started before our change, so wait for the one after it.
    s.next ??= s.running.catch(() => {}).then(() => {
      const t = this.state.get(dir)!;
      t.next = null;
      const running = this.run(dir);
      t.running = running;
      return running;
    });
    return s.next;
  }

  private run(dir: string): Promise<void> {
    const p = fsyncDirectory(dir).catch((err) => Promise.reject(ioError(err, `cannot fsync the folder ${dir}`)));
    void p.then(
      () => this.forget(dir, p),
      () => this.forget(dir, p),
    );
    return p;
  }

  private forget(dir: string, p: Promise<void>): void {
    const s = this.state.get(dir);
    if (s && s.running === p && s.next === null) this.state.delete(dir);
  }
}
