/**
 * Where received entries go: paths under the receiver's folder that never leave it. Every
 * folder on the way to an entry must be a real folder (not a symbolic link), checked with lstat
 * when the offer is planned and again just before a file is moved into place; missing folders
 * are created one level at a time. Folder fsyncs are shared: commits that land in one folder
 * while its fsync runs wait for the next one, so a thousand small files cost a few fsyncs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fsSync from 'node:fs';
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
 * creating missing ones (mode 0777 less the umask); returns the parent. For many entries of one
 * transfer: folders found good (or made) once are not
 * looked at again, and the calls are synchronous: lstat and mkdir take microseconds, and a
 * transfer of thousands of files should not wait for a thread-pool round trip for each.
 */
export function ensureParentsSync(root: string, rel: string, known: Set<string>, created: string[] = []): string {
  const parts = rel.split('/');
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    if (known.has(dir)) continue;
    if (ensureDirectorySync(dir, parts.slice(0, i + 1).join('/'))) created.push(dir);
    known.add(dir);
  }
  return dir;
}

/** `abs` is a real folder afterwards (created if missing), or this throws. `rel` is for messages. Synchronous: an lstat and maybe a mkdir. */
export function ensureDirectorySync(abs: string, rel: string): boolean {
  let st: fsSync.Stats | undefined;
  try {
    st = fsSync.lstatSync(abs, { throwIfNoEntry: false });
    if (st === undefined) {
      try {
        fsSync.mkdirSync(abs);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        st = fsSync.lstatSync(abs);
      }
    }
  } catch (err) {
    throw ioError(err, `cannot create the folder ${printableName(rel)}`);
  }
  if (st.isSymbolicLink()) throw new SockxferError('E_BAD_NAME', `${printableName(rel)} is a symbolic link in the target folder; sockxfer does not write through links`);
  if (!st.isDirectory()) throw new SockxferError('E_EXISTS', `${printableName(rel)} exists in the target folder and is not a folder`);
  return false;
}

/** Checks (without creating anything) that no folder on the way to `rel` is a link or a file. Synchronous: a few lstat calls. */
export function checkParents(root: string, rel: string): void {
  const parts = rel.split('/');
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    dir = path.join(dir, parts[i]!);
    let st: fsSync.Stats | null;
    try {
      st = fsSync.lstatSync(dir, { throwIfNoEntry: false }) ?? null;
    } catch {
      st = null;
    }
    const shown = printableName(parts.slice(0, i + 1).join('/'));
    if (st === null) throw new SockxferError('E_IO', `the folder ${shown} vanished from the target folder during the transfer`);
    if (st.isSymbolicLink()) throw new SockxferError('E_BAD_NAME', `${shown} became a symbolic link in the target folder during the transfer; not written through it`);
    if (!st.isDirectory()) throw new SockxferError('E_EXISTS', `${shown} is not a folder in the target folder`);
  }
}

/**
 * One operation (an fsync, a syncfs) shared by everyone who asks for it: `request()` resolves
 * once a run that started after the call has finished. Callers that ask while a run is going
 * wait for the next one (it may have started before their change), and all of them share it.
 */
export class SharedRun {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;

  constructor(private readonly run: () => Promise<void>) {}

  /** True while a run is going or due. */
  get busy(): boolean {
    return this.running !== null || this.next !== null;
  }

  request(): Promise<void> {
    if (this.running === null) {
      this.running = this.run().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.next ??= this.running
      .catch(() => {})
      .then(() => {
        this.next = null;
        return this.request();
      });
    return this.next;
  }
}

/** Shared folder fsyncs: `sync(dir)` resolves once an fsync of `dir` that started after the call has finished. */
export class DirectorySyncer {
  private readonly runs = new Map<string, SharedRun>();

  sync(dir: string): Promise<void> {
    let run = this.runs.get(dir);
    if (!run) {
      run = new SharedRun(() => fsyncDirectory(dir).catch((err) => Promise.reject(ioError(err, `cannot fsync the folder ${dir}`))));
      this.runs.set(dir, run);
    }
    const shared = run;
    const done = shared.request();
    // Forgotten once idle, so that a long-running receiver does not keep every folder it saw.
    void done.then(
      () => this.forget(dir, shared),
      () => this.forget(dir, shared),
    );
    return done;
  }

  private forget(dir: string, run: SharedRun): void {
    if (!run.busy && this.runs.get(dir) === run) this.runs.delete(dir);
  }
}

/**
 * syncfs(2) of the filesystem that holds `dir`, shared like DirectorySyncer: every caller waits
 * for one that started after its call. Node has no syncfs binding, so a small shell started once
 * runs coreutils' `sync -f DIR` for each request (forking Node itself for each would cost more
 * than the sync). One syncfs makes a thousand small files durable where a thousand fsyncs each
 * force a journal commit (measured: about 30 ms against 0.4-3 s for 2,000 files of 4 KiB).
 * `available` says whether it works here (checked once, by start()); callers fall back to fsync
 * when it does not.
 */
export class FilesystemSyncer {
  available = false;
  private child: ChildProcess | null = null;
  private readonly answers: Array<(ok: boolean) => void> = [];
  private buffered = '';
  private readonly shared = new SharedRun(() => this.run());

  constructor(private readonly dir: string) {}

  /** Starts the shell and runs one syncfs to find out whether `sync -f` works here. */
  async start(): Promise<boolean> {
    if (/[\n\r]/.test(this.dir)) return false;
    try {
      const child = spawn('sh', ['-c', 'while IFS= read -r d; do if sync -f "$d" 2>/dev/null; then echo ok; else echo fail; fi; done'], { stdio: ['pipe', 'pipe', 'ignore'] });
      this.child = child;
      child.on('error', () => this.fail());
      child.on('exit', () => this.fail());
      child.stdin!.on('error', () => this.fail());
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (text: string) => {
        this.buffered += text;
        for (let nl = this.buffered.indexOf('\n'); nl !== -1; nl = this.buffered.indexOf('\n')) {
          const line = this.buffered.slice(0, nl);
          this.buffered = this.buffered.slice(nl + 1);
          this.answers.shift()?.(line === 'ok');
        }
        if (this.answers.length === 0) this.idle(true);
      });
      // The shell must not keep a finished process alive; a pending answer must.
      child.unref();
      (child.stdin as unknown as { unref?: () => void }).unref?.();
      this.idle(true);
      this.available = true;
      await this.run();
    } catch {
      this.stop();
    }
    return this.available;
  }

  private idle(yes: boolean): void {
    const out = this.child?.stdout as unknown as { ref?: () => void; unref?: () => void } | undefined;
    if (yes) out?.unref?.();
    else out?.ref?.();
  }

  /** Ends the shell; later syncs fall back to fsync. */
  stop(): void {
    this.available = false;
    const child = this.child;
    this.child = null;
    if (child) {
      child.stdin?.end();
      child.kill();
    }
    this.fail();
  }

  private fail(): void {
    this.available = false;
    for (const answer of this.answers.splice(0)) answer(false);
  }

  sync(): Promise<void> {
    return this.shared.request();
  }

  private run(): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = this.child;
      if (!child || !this.available) return reject(new SockxferError('E_IO', `cannot sync the filesystem of ${this.dir}`));
      if (this.answers.length === 0) this.idle(false);
      this.answers.push((ok) => (ok ? resolve() : reject(new SockxferError('E_IO', `cannot sync the filesystem of ${this.dir}`))));
      child.stdin!.write(`${this.dir}\n`);
    });
  }
}
