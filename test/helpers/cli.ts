/**
 * Runs the real built CLI (dist/bin/sockxfer.js) as child processes for end-to-end tests.
 * Everything waits on events (a JSON line, a process exit), never on sleeps; every process a
 * test starts is killed by `stopAll()` in afterEach.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { dir, type DirectoryResult } from 'tmp-promise';
import { afterEach, beforeEach } from 'vitest';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'dist/bin/sockxfer.js');

export interface JsonEvent {
  event: string;
  [key: string]: unknown;
}

/** What every receiver says at start: where it listens, and (without a key) that it does not encrypt. */
export function startupEvent(e: JsonEvent): boolean {
  return e.event === 'listening' || (e.event === 'warning' && e.encrypted === false);
}

export interface Proc {
  child: ChildProcess;
  /** Every NDJSON event seen so far (on stdout, or on stderr with `eventsOn: 'stderr'`). */
  events: JsonEvent[];
  /** Every byte written to stdout so far. */
  stdout: () => Buffer;
  /** stderr so far. */
  stderr: () => string;
  /** stdout lines that were not JSON (there should be none with --json). */
  stray: string[];
  /** Resolves with the exit code (or 128+signal number) once the process has exited. */
  exited: Promise<number>;
  /** Resolves with the first event matching `pred` (already seen or future); rejects if the process exits first. */
  waitFor: (pred: (e: JsonEvent) => boolean) => Promise<JsonEvent>;
}

const running = new Set<ChildProcess>();

const SIGNALS: Record<string, number> = { SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export interface ProcOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  uid?: number;
  gid?: number;
  /** Pipe standard input (for `send -`); otherwise it is closed. */
  stdin?: boolean;
  /** Where the NDJSON events are: stdout (default) or stderr (`receive --stdout`, whose stdout is the data). */
  eventsOn?: 'stdout' | 'stderr';
}

/** Starts `sockxfer ...args`. */
export function sockxfer(args: string[], options: ProcOptions = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    // Only when asked: a test run as root drops to another user to meet a real permission error.
    ...(options.uid !== undefined ? { uid: options.uid } : {}),
    ...(options.gid !== undefined ? { gid: options.gid } : {}),
  });
  running.add(child);
  const events: JsonEvent[] = [];
  const stray: string[] = [];
  const stdoutChunks: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => stdoutChunks.push(b));
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => (stderr += s));
  // Writing to a child that died (a test kills it) must not crash the test process.
  child.stdin?.on('error', () => {});
  const onStderr = options.eventsOn === 'stderr';
  const waiters: Array<{ pred: (e: JsonEvent) => boolean; resolve: (e: JsonEvent) => void }> = [];
  readline.createInterface({ input: onStderr ? child.stderr! : child.stdout! }).on('line', (line) => {
    // On stderr the events sit among the human lines.
    if (onStderr && !line.startsWith('{')) return;
    let e: JsonEvent;
    try {
      e = JSON.parse(line) as JsonEvent;
    } catch {
      stray.push(line);
      return;
    }
    events.push(e);
    for (const w of waiters.splice(0)) {
      if (w.pred(e)) w.resolve(e);
      else waiters.push(w);
    }
  });
  const exited = new Promise<number>((resolve) => {
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve(code ?? 128 + (SIGNALS[signal ?? ''] ?? 0));
    });
  });
  const waitFor = (pred: (e: JsonEvent) => boolean) => {
    const seen = events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<JsonEvent>((resolve, reject) => {
      waiters.push({ pred, resolve });
      void exited.then((code) => reject(new Error(`sockxfer ${args.join(' ')} exited with ${code} before the awaited event; stderr:\n${stderr}`)));
    });
  };
  return { child, events, stray, stdout: () => Buffer.concat(stdoutChunks), stderr: () => stderr, exited, waitFor };
}

/** Starts a receiver on 127.0.0.1, port 0, and waits for its `listening` event. */
export async function startReceiver(dir: string, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<{ proc: Proc; port: number; address: string }> {
  const proc = sockxfer(['receive', '--port', '0', '--host', '127.0.0.1', '--dir', dir, '--json', ...extra], { env });
  const listening = await proc.waitFor((e) => e.event === 'listening');
  const port = listening.port as number;
  return { proc, port, address: `127.0.0.1:${port}` };
}

/** Runs `sockxfer send file address --json ...extra` to completion. */
export async function send(file: string, address: string, extra: string[] = [], env?: NodeJS.ProcessEnv): Promise<{ code: number; events: JsonEvent[]; stderr: string; last: JsonEvent | undefined }> {
  const proc = sockxfer(['send', file, address, '--json', ...extra], { env });
  const code = await proc.exited;
  return { code, events: proc.events, stderr: proc.stderr(), last: proc.events.at(-1) };
}

/** Kills every process a test started (call in afterEach). */
export async function stopAll(): Promise<void> {
  const waits: Array<Promise<unknown>> = [];
  for (const child of running) {
    waits.push(new Promise((resolve) => child.once('close', resolve)));
    child.kill('SIGKILL');
  }
  await Promise.all(waits);
}

export { randomFile, sha256File } from '../../bench/files.js';

/** Names in a folder, sorted (to check that no temporary file is left behind). */
export async function listDir(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

/** A sparse file of `size` bytes that reads as zeros: big enough to stop a transfer midway, instant to make. */
export async function sparseFile(file: string, size: number): Promise<void> {
  await fs.writeFile(file, '');
  await fs.truncate(file, size);
}

/** A TCP port on 127.0.0.1 that nothing listens on: bound on port 0, then closed. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Resolves once `proc` has printed `count` events matching `pred` (already seen or future). */
export async function waitForCount(proc: Proc, pred: (e: JsonEvent) => boolean, count: number): Promise<JsonEvent[]> {
  await proc.waitFor(() => proc.events.filter(pred).length >= count);
  return proc.events.filter(pred);
}

/** Per test: a fresh temporary folder with `src` and `out` in it; afterwards every process the test started is stopped and the folder removed. Call once at the top of a test file. */
export function useWorkspace(): { readonly root: string; readonly src: string; readonly out: string } {
  let tmp: DirectoryResult | null = null;
  const ws = { root: '', src: '', out: '' };
  beforeEach(async () => {
    tmp = await dir({ unsafeCleanup: true });
    ws.root = tmp.path;
    ws.src = path.join(tmp.path, 'src');
    ws.out = path.join(tmp.path, 'out');
    await fs.mkdir(ws.src);
    await fs.mkdir(ws.out);
  });
  afterEach(async () => {
    await stopAll();
    await tmp?.cleanup();
  });
  return ws;
}

/** Resolves with `promise`, or fails after `ms` (a bound on a wait, never a sleep) with what was awaited. */
export async function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the exit status, or fails the test if the process is still running after `ms`. */
export function exitWithin(proc: Proc, ms: number, what: string): Promise<number> {
  return within(proc.exited, ms, () => `${what}: still running; stderr:\n${proc.stderr()}`);
}
