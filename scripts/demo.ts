/**
 * `npm run demo`: one real transfer on this machine, for someone who just cloned the repository.
 *
 * Makes a temporary folder, writes a 64 MiB random file into it, and twice (over TCP, then over
 * UDP with `--udp`) starts the real receiver (`sockxfer receive --port 0 --host 127.0.0.1 --once
 * --json`), sends the file with the real sender (human output, as a person would see it), then
 * checks both exit statuses and that the received file has the same SHA-256 as the source.
 * Everything is removed at the end, the receiver is killed on any failure, and the whole demo is
 * bounded to 60 seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'dist/bin/sockxfer.js');
const SIZE = 64 * 1024 * 1024;
const PIECE = 4 * 1024 * 1024;
const TIMEOUT_MS = 60_000;
const NAME = 'sockxfer-demo-64MiB.bin';

class DemoError extends Error {}

const children = new Set<ChildProcess>();
let tmp: string | null = null;
let interrupted = false;

function say(line: string): void {
  process.stdout.write(`demo: ${line}\n`);
}

/** Rejects when the whole demo has run longer than TIMEOUT_MS. */
let deadlineTimer: NodeJS.Timeout | undefined;
const deadline = new Promise<never>((_, reject) => {
  deadlineTimer = setTimeout(() => reject(new DemoError(`gave up after ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
});
deadline.catch(() => {});
const bounded = <T>(p: Promise<T>): Promise<T> => Promise.race([p, deadline]);

function exitStatus(child: ChildProcess): Promise<string | number> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    if (child.signalCode !== null) return resolve(child.signalCode);
    child.once('error', (err) => resolve(`could not start (${err.message})`));
    child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('close', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

async function cleanup(): Promise<void> {
  const waits = [...children].map((c) => {
    const gone = exitStatus(c);
    c.kill('SIGKILL');
    return gone;
  });
  await Promise.race([Promise.all(waits), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
  tmp = null;
  clearTimeout(deadlineTimer);
}

/** 64 MiB of random bytes, written 4 MiB at a time (never one 64 MiB buffer). */
async function writeRandomFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'wx');
  try {
    for (let done = 0; done < SIZE; done += PIECE) await handle.write(randomBytes(Math.min(PIECE, SIZE - done)));
  } finally {
    await handle.close();
  }
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function demo(): Promise<void> {
  if (!fs.existsSync(BIN)) throw new DemoError(`${path.relative(process.cwd(), BIN)} is missing; build first: npx tsc -p . (or npm run build)`);

  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'sockxfer-demo-'));
  const sendDir = path.join(tmp, 'send');
  await fsp.mkdir(sendDir);
  const source = path.join(sendDir, NAME);
  say(`writing a 64 MiB random file: ${source}`);
  await bounded(writeRandomFile(source));
  const sourceHash = await bounded(sha256File(source));
  await transfer('tcp', source, sourceHash, []);
  await transfer('udp', source, sourceHash, ['--udp']);
}

/** One transfer of `source` to a fresh --once receiver, checked end to end. */
async function transfer(kind: 'tcp' | 'udp', source: string, sourceHash: string, sendFlags: string[]): Promise<void> {
  const recvDir = path.join(tmp!, `receive-${kind}`);
  await fsp.mkdir(recvDir);

  // The receiver: NDJSON on stdout (to learn its port), human lines on stderr (shown afterwards).
  const receiver = track(
    spawn(process.execPath, [BIN, 'receive', '--port', '0', '--host', '127.0.0.1', '--dir', recvDir, '--once', '--json'], {
      cwd: tmp!,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  const receiverExit = exitStatus(receiver);
  let receiverStderr = '';
  receiver.stderr!.setEncoding('utf8');
  receiver.stderr!.on('data', (s: string) => (receiverStderr += s));
  const events: Array<Record<string, unknown>> = [];
  const listening = new Promise<Record<string, unknown>>((resolve, reject) => {
    readline.createInterface({ input: receiver.stdout! }).on('line', (line) => {
      let e: Record<string, unknown>;
      try {
        e = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      events.push(e);
      if (e.event === 'listening') resolve(e);
    });
    void receiverExit.then((status) => reject(new DemoError(`the receiver stopped (exit ${status}) before it listened:\n${receiverStderr.trim()}`)));
  });
  const port = (await bounded(listening)).port as number;
  const address = `127.0.0.1:${port}`;
  say(`receiver listening on ${address}, TCP and UDP (pid ${receiver.pid}), writing into ${recvDir}`);

  // The sender, as a person would run it: human output straight to this terminal.
  say(`$ sockxfer send ${source} ${address}${sendFlags.length ? ` ${sendFlags.join(' ')}` : ''}`);
  const sender = track(spawn(process.execPath, [BIN, 'send', source, address, ...sendFlags], { cwd: tmp!, stdio: ['ignore', 'inherit', 'inherit'] }));
  const senderStatus = await bounded(exitStatus(sender));
  const showReceiver = () => {
    for (const line of receiverStderr.trim().split('\n')) if (line) process.stdout.write(`  [receiver] ${line}\n`);
  };
  if (senderStatus !== 0) {
    // The receiver may still wait for a transfer: cleanup() kills it.
    showReceiver();
    throw new DemoError(`the sender failed (exit ${senderStatus}); its message is above`);
  }
  const receiverStatus = await bounded(receiverExit);
  showReceiver();
  if (receiverStatus !== 0) throw new DemoError(`the receiver failed (exit ${receiverStatus}): ${receiverStderr.trim()}`);
  const done = events.find((e) => e.event === 'done');
  if (!done) throw new DemoError('the receiver exited 0 but reported no completed transfer');
  if (done.transport !== kind) throw new DemoError(`the receiver reports a transfer over ${String(done.transport)}, expected ${kind}`);

  const received = path.join(recvDir, NAME);
  const st = await fsp.stat(received).catch(() => null);
  if (!st) throw new DemoError(`the received file ${received} does not exist`);
  if (st.size !== SIZE) throw new DemoError(`the received file has ${st.size} bytes, expected ${SIZE}`);
  const receivedHash = await bounded(sha256File(received));
  if (receivedHash !== sourceHash) throw new DemoError(`SHA-256 differs: source ${sourceHash}, received ${receivedHash}`);
  const leftovers = (await fsp.readdir(recvDir)).filter((n) => n !== NAME);
  if (leftovers.length) throw new DemoError(`unexpected files left in the receive folder: ${leftovers.join(', ')}`);

  say(`OK — ${(SIZE / 1024 ** 2).toFixed(1)} MiB sent over ${kind.toUpperCase()} to ${address}, SHA-256 ${sourceHash} identical on both sides`);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\ndemo: interrupted (${sig}); stopping the receiver and removing the temporary folder\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

demo()
  .then(
    () => 0,
    (err: unknown) => {
      if (interrupted) return 130; // the signal handler reports and exits
      const msg = err instanceof DemoError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
      process.stderr.write(`demo: FAILED — ${msg}\n`);
      return 1;
    },
  )
  .then(async (status) => {
    await cleanup();
    process.exit(status);
  });
