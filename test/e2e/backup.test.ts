/**
 * End-to-end backups through the built CLI (dist/bin/sockxfer.js) on 127.0.0.1, port 0: folder
 * trees with their modes and mtimes, standard input of unknown length, `receive --stdout`,
 * resume after a SIGKILL of either side, retries, overwrite policies, the receiver's limits and
 * log, many senders at once and --max-sessions. Every file that arrives is checked byte for byte
 * (SHA-256 of source and result). Waits are on events and exits, each bounded; never on sleeps.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SEND_OPTIONS, send as sendInProcess, type TransferResult } from '../../src/transfer/index.js';
import {
  closedPort,
  exitWithin,
  randomFile,
  send,
  sha256File,
  sockxfer,
  sparseFile,
  startReceiver,
  useWorkspace,
  waitForCount,
  within,
  type JsonEvent,
} from '../helpers/cli.js';
import { seededBytes } from '../helpers/seeded.js';
import { PARTIAL, buildTree, feedStdin, partialEntries, scanTree, setMtime, sha256, type TreeSpec } from '../helpers/tree.js';

const ws = useWorkspace();

const KINDS = ['tcp', 'udp'] as const;
type Kind = (typeof KINDS)[number];
const transportArgs = (kind: Kind): string[] => (kind === 'udp' ? ['--udp'] : []);

const MiB = 1024 * 1024;
const isFile = (e: JsonEvent) => e.event === 'file';
const isDone = (e: JsonEvent) => e.event === 'done';

/** Names in `dir`, the (empty) partial-data folder left out. */
async function visible(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).filter((n) => n !== PARTIAL).sort();
}

/** Everything under `dir` that is not a folder (so an empty partial-data folder does not count as written). */
async function filesUnder(dir: string): Promise<string[]> {
  const all = await scanTree(dir);
  return [...all].filter(([, e]) => e.kind !== 'directory').map(([rel]) => rel);
}

// ---- 1. Trees ----------------------------------------------------------------------------

/** A tree with nested and empty folders, spaces and non-ASCII names, several modes, millisecond mtimes and one link. */
function backupTree(): TreeSpec[] {
  let n = 0;
  const at = () => new Date(Date.UTC(2021, n % 12, 3 + n, 4, 5, 6, 100 + 37 * n++));
  return [
    { kind: 'directory', rel: 'tree', mode: 0o755, mtime: at() },
    { kind: 'directory', rel: 'tree/a dir with spaces', mode: 0o750, mtime: at() },
    { kind: 'file', rel: 'tree/a dir with spaces/naïve café.txt', mode: 0o640, mtime: at(), content: seededBytes(10_000, 1) },
    { kind: 'directory', rel: 'tree/a dir with spaces/deeper', mode: 0o755, mtime: at() },
    { kind: 'file', rel: 'tree/a dir with spaces/deeper/日本語 ファイル.bin', mode: 0o755, mtime: at(), content: seededBytes(65_537, 2) },
    { kind: 'directory', rel: 'tree/empty', mode: 0o700, mtime: at() },
    { kind: 'directory', rel: 'tree/nested', mode: 0o755, mtime: at() },
    { kind: 'directory', rel: 'tree/nested/empty', mode: 0o750, mtime: at() },
    { kind: 'directory', rel: 'tree/nested/empty/inner', mode: 0o711, mtime: at() },
    { kind: 'file', rel: 'tree/run.sh', mode: 0o755, mtime: at(), content: Buffer.from('#!/bin/sh\necho backup\n') },
    { kind: 'file', rel: 'tree/zero.bin', mode: 0o600, mtime: at(), content: Buffer.alloc(0) },
    { kind: 'file', rel: 'tree/emoji 🎉 Ω.dat', mode: 0o644, mtime: at(), content: seededBytes(300_001, 3) },
    { kind: 'symlink', rel: 'tree/link to run.sh', target: 'run.sh' },
  ];
}

describe.each(KINDS)('a folder tree over %s', (kind) => {
  it('arrives whole: byte-identical files, modes and millisecond mtimes of files and folders, empty folders, one file event per entry, the counts', async () => {
    const spec = backupTree();
    await buildTree(ws.src, spec);
    const source = await scanTree(ws.src, (rel) => rel === 'tree/link to run.sh');
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sent = await send(path.join(ws.src, 'tree'), address, transportArgs(kind));
    const receiverCode = await exitWithin(receiver, 15_000, 'the --once receiver');
    expect(sent.code, sent.stderr).toBe(0);
    expect(receiverCode, receiver.stderr()).toBe(0);

    // Everything but the link, with the same kind, mode, mtime (to the ms) and bytes.
    const result = await scanTree(ws.out, (rel) => rel === PARTIAL);
    expect([...result.keys()].sort()).toEqual([...source.keys()].sort());
    for (const [rel, src] of source) {
      const dst = result.get(rel)!;
      expect({ rel, kind: dst.kind, mode: dst.mode.toString(8) }).toEqual({ rel, kind: src.kind, mode: src.mode.toString(8) });
      expect(Math.floor(dst.mtimeMs), `mtime of ${rel}`).toBe(Math.floor(src.mtimeMs));
      if (src.kind === 'file') expect(dst.sha256, `content of ${rel}`).toBe(src.sha256);
    }
    // And they are the very milliseconds set on the source.
    for (const e of spec) {
      if (e.kind !== 'symlink') expect(Math.floor(result.get(e.rel)!.mtimeMs), `mtime of ${e.rel}`).toBe(e.mtime.getTime());
    }
    expect(await partialEntries(ws.out)).toEqual([]);

    // The link inside the folder was skipped, with a warning.
    const warnings = sent.events.filter((e) => e.event === 'warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.path).toBe(path.join(ws.src, 'tree', 'link to run.sh'));

    // One file event per entry on both sides, all committed.
    const names = [...source.keys()].sort();
    const files = [...source].filter(([, e]) => e.kind === 'file');
    const bytes = files.reduce((n, [, e]) => n + e.size, 0);
    for (const events of [sent.events, receiver.events]) {
      const fileEvents = events.filter(isFile);
      expect(fileEvents.map((e) => e.name as string).sort()).toEqual(names);
      for (const e of fileEvents) {
        expect(e).toMatchObject({ result: 'committed', kind: source.get(e.name as string)!.kind });
        if (e.kind === 'file') expect(e.bytes).toBe(source.get(e.name as string)!.size);
      }
      expect(events.filter(isDone)).toHaveLength(1);
      expect(events.find(isDone)).toMatchObject({ files: files.length, committed: files.length, upToDate: 0, failed: 0, bytes, transport: kind });
    }
    // Nothing was resumed or skipped: every byte went over the wire.
    expect(sent.last).toMatchObject({ event: 'done', sentBytes: bytes });
  });
});

// ---- 2. Standard input -------------------------------------------------------------------

describe.each(KINDS)('standard input over %s', (kind) => {
  it('5 MiB + 123 bytes piped in pieces into `send - --name x.bin` arrive byte-identical', async () => {
    const size = 5 * MiB + 123;
    const data = seededBytes(size, 77);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sender = sockxfer(['send', '-', address, '--name', 'x.bin', '--json', ...transportArgs(kind)], { stdin: true });
    // Uneven pieces, so chunk boundaries never line up with writes.
    await feedStdin(sender, data, 100_003);
    const code = await within(sender.exited, 20_000, () => `the stdin sender still runs; stderr:\n${sender.stderr()}`);
    const receiverCode = await exitWithin(receiver, 15_000, 'the --once receiver');
    expect(code, sender.stderr()).toBe(0);
    expect(receiverCode, receiver.stderr()).toBe(0);
    expect(await sha256File(path.join(ws.out, 'x.bin'))).toBe(sha256(data));
    expect(sender.events.filter(isFile)).toMatchObject([{ name: 'x.bin', kind: 'stream', bytes: size, result: 'committed' }]);
    expect(sender.events.at(-1)).toMatchObject({ event: 'done', name: 'x.bin', bytes: size, sentBytes: size, transport: kind });
    expect(receiver.events.find(isDone)).toMatchObject({ name: 'x.bin', bytes: size, hash: sender.events.at(-1)!.hash });
    expect(await visible(ws.out)).toEqual(['x.bin']);
    expect(await partialEntries(ws.out)).toEqual([]);
  });
});

// ---- 3. receive --stdout -----------------------------------------------------------------

describe.each(KINDS)('receive --once --stdout over %s', (kind) => {
  it("writes the file's bytes, and only them, to standard output; events go to stderr", async () => {
    const size = 3 * MiB + 7;
    const file = path.join(ws.src, 'dump.sql');
    await randomFile(file, size);
    const receiver = sockxfer(['receive', '--port', '0', '--host', '127.0.0.1', '--dir', ws.out, '--once', '--stdout', '--json'], { eventsOn: 'stderr' });
    const listening = await within(receiver.waitFor((e) => e.event === 'listening'), 10_000, () => `listening event; stderr:\n${receiver.stderr()}`);
    const sent = await send(file, `127.0.0.1:${listening.port as number}`, transportArgs(kind));
    const receiverCode = await within(receiver.exited, 15_000, () => `the --stdout receiver still runs; stderr:\n${receiver.stderr()}`);
    expect(sent.code, sent.stderr).toBe(0);
    expect(receiverCode, receiver.stderr()).toBe(0);
    // Standard output is the file, byte for byte: no event, no human line.
    const out = receiver.stdout();
    expect(out.length).toBe(size);
    expect(out.equals(await fs.readFile(file))).toBe(true);
    // The events (with --json) went to stderr.
    expect(receiver.events.find(isDone)).toMatchObject({ name: 'dump.sql', bytes: size, hash: sent.last!.hash, transport: kind });
    // Nothing was written to the folder.
    expect(await filesUnder(ws.out)).toEqual([]);
  });
});

// ---- 4-6. Resume ---------------------------------------------------------------------------

const BIG = 64 * MiB;
/** Slow enough that "half way" lasts a while: 20 MB/s over TCP; UDP goes at ~25 MB/s unthrottled here, so lower. */
const SLOW_RATE: Record<Kind, string> = { tcp: '160M', udp: '100M' };

const progressAtLeast = (bytes: number) => (e: JsonEvent) => e.event === 'progress' && (e.bytes as number) >= bytes;

/** The resumable journal (and its data) that an interrupted transfer left. */
async function expectPartialKept(dir: string): Promise<void> {
  const names = await partialEntries(dir);
  expect(names.filter((n) => n.endsWith('.journal')), `partial folder: ${names.join(', ')}`).toHaveLength(1);
  expect(names.filter((n) => n.endsWith('.part')), `partial folder: ${names.join(', ')}`).toHaveLength(1);
}

/**
 * Starts a rate-limited send of `file` to `address` and SIGKILLs the sender once its own
 * progress reaches half; returns when it has exited.
 */
async function killSenderAtHalf(file: string, size: number, address: string, kind: Kind): Promise<JsonEvent> {
  const first = sockxfer(['send', file, address, '--json', '--rate', SLOW_RATE[kind], ...transportArgs(kind)]);
  const half = await within(first.waitFor(progressAtLeast(size / 2)), 30_000, () => `the sender to reach half; stderr:\n${first.stderr()}`);
  first.child.kill('SIGKILL');
  expect(await exitWithin(first, 5000, 'the SIGKILLed sender')).toBe(137);
  expect(first.events.some(isDone)).toBe(false);
  return half;
}

describe.each(KINDS)('resume over %s', (kind) => {
  it('after a SIGKILL of the sender half way through 64 MiB, the second send sends only the rest', async () => {
    const file = path.join(ws.src, 'big.bin');
    const sha = await randomFile(file, BIG);
    // A short idle timeout: over UDP a dead sender is noticed only by its silence.
    const { proc: receiver, address } = await startReceiver(ws.out, ['--timeout', '2']);
    const half = await killSenderAtHalf(file, BIG, address, kind);
    // The receiver lets go of the session (and keeps its partial data) before the second run.
    const lost = await within(receiver.waitFor((e) => e.event === 'error' && e.session === half.session), 10_000, () => `the receiver to notice; stderr:\n${receiver.stderr()}`);
    expect(['E_CONNECTION_LOST', 'E_TIMEOUT']).toContain(lost.code);
    await expectPartialKept(ws.out);
    expect(await visible(ws.out)).toEqual([]);

    const second = await send(file, address, transportArgs(kind));
    expect(second.code, second.stderr).toBe(0);
    const done = second.last!;
    expect(done).toMatchObject({ event: 'done', name: 'big.bin', bytes: BIG, committed: 1 });
    expect(done.sentBytes as number, `sentBytes ${String(done.sentBytes)} of ${BIG}`).toBeLessThanOrEqual(0.6 * BIG);
    expect(done.sentBytes as number).toBeGreaterThan(0);
    expect(second.events.find(isFile)).toMatchObject({ result: 'committed', sentBytes: done.sentBytes });
    expect(await sha256File(path.join(ws.out, 'big.bin'))).toBe(sha);
    expect(await visible(ws.out)).toEqual(['big.bin']);
    expect(await partialEntries(ws.out)).toEqual([]);
  });

  it('after a SIGKILL of the receiver half way through 64 MiB, the sender exits 3 (or 4), and a new receiver on the same folder takes only the rest', async () => {
    const file = path.join(ws.src, 'big.bin');
    const sha = await randomFile(file, BIG);
    const first = await startReceiver(ws.out);
    const sender = sockxfer(['send', file, first.address, '--json', '--rate', SLOW_RATE[kind], '--timeout', '5', ...transportArgs(kind)]);
    await within(first.proc.waitFor(progressAtLeast(BIG / 2)), 30_000, () => `the receiver to reach half; stderr:\n${first.proc.stderr()}`);
    first.proc.child.kill('SIGKILL');
    expect(await exitWithin(first.proc, 5000, 'the SIGKILLed receiver')).toBe(137);
    const code = await exitWithin(sender, 15_000, 'the sender after its receiver was killed');
    expect([3, 4], sender.stderr()).toContain(code);
    expect(sender.events.at(-1)).toMatchObject({ event: 'error', exitCode: code });
    await expectPartialKept(ws.out);

    const again = await startReceiver(ws.out);
    const second = await send(file, again.address, transportArgs(kind));
    expect(second.code, second.stderr).toBe(0);
    const done = second.last!;
    expect(done).toMatchObject({ event: 'done', name: 'big.bin', bytes: BIG, committed: 1 });
    expect(done.sentBytes as number, `sentBytes ${String(done.sentBytes)} of ${BIG}`).toBeLessThanOrEqual(0.6 * BIG);
    expect(done.sentBytes as number).toBeGreaterThan(0);
    expect(await sha256File(path.join(ws.out, 'big.bin'))).toBe(sha);
    expect(await visible(ws.out)).toEqual(['big.bin']);
    expect(await partialEntries(ws.out)).toEqual([]);
  });
});

describe('resume, when the source changed in between (tcp)', () => {
  it('sends the new content whole (sentBytes = size) and commits it', async () => {
    const size = 16 * MiB;
    const file = path.join(ws.src, 'db.dump');
    await randomFile(file, size);
    await setMtime(file, new Date('2024-01-01T00:00:00.250Z'));
    const { proc: receiver, address } = await startReceiver(ws.out);
    const first = sockxfer(['send', file, address, '--json', '--rate', '64M']);
    const half = await within(first.waitFor(progressAtLeast(size / 2)), 30_000, () => `the sender to reach half; stderr:\n${first.stderr()}`);
    first.child.kill('SIGKILL');
    await exitWithin(first, 5000, 'the SIGKILLed sender');
    await within(receiver.waitFor((e) => e.event === 'error' && e.session === half.session), 10_000, () => `the receiver to notice; stderr:\n${receiver.stderr()}`);
    await expectPartialKept(ws.out);

    // Same size, other bytes, another mtime.
    const sha = await randomFile(file, size);
    await setMtime(file, new Date('2024-06-01T12:00:00.750Z'));
    const second = await send(file, address);
    expect(second.code, second.stderr).toBe(0);
    expect(second.last).toMatchObject({ event: 'done', name: 'db.dump', bytes: size, sentBytes: size, committed: 1 });
    expect(await sha256File(path.join(ws.out, 'db.dump'))).toBe(sha);
  });
});

// ---- 7. --retry ----------------------------------------------------------------------------

describe('--retry (tcp)', () => {
  it('keeps trying until a receiver listens, exits 0, and the receipt says attempts ≥ 2 with every file as the receiver hashed it', async () => {
    await buildTree(ws.src, [
      { kind: 'directory', rel: 'docs', mode: 0o755, mtime: new Date('2023-03-03T03:03:03.333Z') },
      { kind: 'file', rel: 'docs/a.txt', mode: 0o644, mtime: new Date('2023-03-03T03:03:03.111Z'), content: seededBytes(12_345, 11) },
      { kind: 'file', rel: 'docs/b.bin', mode: 0o600, mtime: new Date('2023-03-03T03:03:03.222Z'), content: seededBytes(200_000, 12) },
    ]);
    const port = await closedPort();
    const receipt = path.join(ws.root, 'receipt.json');
    const sender = sockxfer(['send', path.join(ws.src, 'docs'), `127.0.0.1:${port}`, '--json', '--retry', '5', '--retry-delay', '0.2', '--receipt', receipt]);
    const retry = await within(sender.waitFor((e) => e.event === 'retry'), 10_000, () => `a retry event; stderr:\n${sender.stderr()}`);
    expect(retry).toMatchObject({ attempt: 1, attempts: 6, code: 'E_CONNECT_REFUSED' });
    const receiver = sockxfer(['receive', '--port', String(port), '--host', '127.0.0.1', '--dir', ws.out, '--json']);
    await within(receiver.waitFor((e) => e.event === 'listening'), 10_000, () => `the receiver on port ${port}; stderr:\n${receiver.stderr()}`);

    const code = await exitWithin(sender, 20_000, 'the retrying sender');
    expect(code, sender.stderr()).toBe(0);
    const retries = sender.events.filter((e) => e.event === 'retry');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries.map((e) => e.attempt)).toEqual(retries.map((_, i) => i + 1));
    expect(sender.events.at(-1)).toMatchObject({ event: 'done', files: 2, committed: 2, failed: 0 });

    const received = (await waitForCount(receiver, isFile, 3)).filter((e) => e.kind === 'file');
    const r = JSON.parse(await fs.readFile(receipt, 'utf8')) as { attempts: number; result: string; exitCode: number; files: Array<{ name: string; kind: string; bytes: number; hash?: string; result: string }> };
    expect(r.attempts).toBe(retries.length + 1);
    expect(r.attempts).toBeGreaterThanOrEqual(2);
    expect(r).toMatchObject({ result: 'ok', exitCode: 0 });
    expect(r.files.map((f) => f.name).sort()).toEqual(['docs', 'docs/a.txt', 'docs/b.bin']);
    for (const f of r.files.filter((x) => x.kind === 'file')) {
      const theirs = received.find((e) => e.name === f.name)!;
      expect(f).toMatchObject({ bytes: (await fs.stat(path.join(ws.src, f.name))).size, result: 'committed', hash: theirs.hash });
      expect(f.hash).toMatch(/^[0-9a-f]{32}$/);
      expect(await sha256File(path.join(ws.out, f.name))).toBe(await sha256File(path.join(ws.src, f.name)));
    }
    receiver.child.kill('SIGTERM');
    await exitWithin(receiver, 10_000, 'the receiver after SIGTERM');
  });
});

// ---- 8. Policies ---------------------------------------------------------------------------

describe('what becomes of an existing file (tcp)', () => {
  /** A file in the source and a file of that name already in the target folder; returns the latter's stat and SHA-256. */
  async function existing(name: string, ours: Buffer, theirs: Buffer): Promise<{ file: string; target: string; sha: string; mtimeMs: number }> {
    const file = path.join(ws.src, name);
    await fs.writeFile(file, ours);
    const target = path.join(ws.out, name);
    await fs.writeFile(target, theirs);
    await setMtime(target, new Date('2020-02-02T02:02:02.020Z'));
    return { file, target, sha: sha256(theirs), mtimeMs: (await fs.stat(target)).mtimeMs };
  }

  /** Sends `ours` as `name` into a default (refusing) receiver that holds `theirs` under that name. */
  async function expectRefused(name: string, ours: Buffer, theirs: Buffer): Promise<void> {
    const t = await existing(name, ours, theirs);
    // A short idle timeout only bounds how long a hang would take to show.
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once', '--timeout', '5']);
    const sent = await send(t.file, address, ['--timeout', '5']);
    expect(sent.code, sent.stderr).toBe(6);
    expect(sent.last).toMatchObject({ event: 'error', code: 'E_EXISTS', exitCode: 6 });
    expect(sent.events.filter(isFile)).toMatchObject([{ name, result: 'failed', code: 'E_EXISTS' }]);
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(6);
    expect(await sha256File(t.target)).toBe(t.sha);
    expect((await fs.stat(t.target)).mtimeMs).toBe(t.mtimeMs);
    expect(await visible(ws.out)).toEqual([name]);
    expect(await partialEntries(ws.out)).toEqual([]);
  }

  it('by default a differing file of another size is refused (exit 6, E_EXISTS) and left untouched', async () => {
    await expectRefused('other-size.txt', seededBytes(5000, 21), seededBytes(4000, 23));
  });

  it('by default a differing file of the same size is refused (exit 6, E_EXISTS) and left untouched', async () => {
    await expectRefused('same-size.txt', seededBytes(5000, 21), seededBytes(5000, 22));
  });

  it('an identical file is up to date: exit 0, nothing sent (sentBytes 0), the file left as it is', async () => {
    const bytes = seededBytes(300_000, 31);
    const t = await existing('same.bin', bytes, bytes);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sent = await send(t.file, address);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.last).toMatchObject({ event: 'done', name: 'same.bin', upToDate: 1, committed: 0, sentBytes: 0 });
    expect(sent.events.filter(isFile)).toMatchObject([{ name: 'same.bin', result: 'up-to-date', sentBytes: 0 }]);
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(0);
    expect(await sha256File(t.target)).toBe(t.sha);
    expect((await fs.stat(t.target)).mtimeMs).toBe(t.mtimeMs);
  });

  it('--overwrite replaces a differing file', async () => {
    const ours = seededBytes(70_000, 41);
    const t = await existing('replace.bin', ours, seededBytes(70_000, 42));
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once', '--overwrite']);
    const sent = await send(t.file, address);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.last).toMatchObject({ event: 'done', name: 'replace.bin', committed: 1, remotePath: 'replace.bin' });
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(0);
    expect(await sha256File(t.target)).toBe(sha256(ours));
    expect(Math.floor((await fs.stat(t.target)).mtimeMs)).toBe(Math.floor((await fs.stat(t.file)).mtimeMs));
    expect(await visible(ws.out)).toEqual(['replace.bin']);
  });

  it('--keep-both commits the new file as "name (1).ext" and leaves the original untouched', async () => {
    const ours = seededBytes(9000, 51);
    const t = await existing('report.txt', ours, seededBytes(8000, 52));
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once', '--keep-both']);
    const sent = await send(t.file, address);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.last).toMatchObject({ event: 'done', name: 'report.txt', committed: 1, remotePath: 'report (1).txt' });
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(0);
    expect(await sha256File(t.target)).toBe(t.sha);
    expect((await fs.stat(t.target)).mtimeMs).toBe(t.mtimeMs);
    expect(await sha256File(path.join(ws.out, 'report (1).txt'))).toBe(sha256(ours));
    expect(await visible(ws.out)).toEqual(['report (1).txt', 'report.txt']);
  });
});

// ---- 9. Limits -----------------------------------------------------------------------------

describe("the receiver's limits (tcp)", () => {
  it('--max-size 1000 refuses a 2000-byte file (E_LIMIT) and commits the 1000-byte one of the same tree; the send exits 6', async () => {
    await buildTree(ws.src, [
      { kind: 'directory', rel: 'pair', mode: 0o755, mtime: new Date('2022-02-02T00:00:00.000Z') },
      { kind: 'file', rel: 'pair/big.bin', mode: 0o644, mtime: new Date('2022-02-02T00:00:00.000Z'), content: seededBytes(2000, 61) },
      { kind: 'file', rel: 'pair/small.bin', mode: 0o644, mtime: new Date('2022-02-02T00:00:00.000Z'), content: seededBytes(1000, 62) },
    ]);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once', '--max-size', '1000']);
    const sent = await send(path.join(ws.src, 'pair'), address);
    expect(sent.code, sent.stderr).toBe(6);
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(6);
    expect(sent.last).toMatchObject({ event: 'error', code: 'E_LIMIT', exitCode: 6, committed: 1, failed: 1 });
    const files = sent.events.filter(isFile);
    expect(files.find((e) => e.name === 'pair/big.bin')).toMatchObject({ result: 'failed', code: 'E_LIMIT', exitCode: 6 });
    expect(files.find((e) => e.name === 'pair/small.bin')).toMatchObject({ result: 'committed' });
    expect(await sha256File(path.join(ws.out, 'pair', 'small.bin'))).toBe(sha256(seededBytes(1000, 62)));
    expect(await filesUnder(ws.out)).toEqual(['pair/small.bin']);
  });

  it('--max-files 3 refuses a tree of 5 entries whole (exit 6, E_LIMIT) and writes nothing', async () => {
    const mtime = new Date('2022-03-03T00:00:00.000Z');
    await buildTree(ws.src, [
      { kind: 'directory', rel: 'five', mode: 0o755, mtime },
      ...[1, 2, 3, 4].map((i): TreeSpec => ({ kind: 'file', rel: `five/f${i}.txt`, mode: 0o644, mtime, content: seededBytes(100 * i, 70 + i) })),
    ]);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once', '--max-files', '3']);
    const sent = await send(path.join(ws.src, 'five'), address);
    expect(sent.code, sent.stderr).toBe(6);
    expect(sent.last).toMatchObject({ event: 'error', code: 'E_LIMIT', exitCode: 6 });
    expect(sent.last!.message).toMatch(/5 entries.*at most 3/);
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(6);
    expect(await fs.readdir(ws.out)).toEqual([]);
  });

  it('an offer larger than the free space is refused (exit 6, E_NO_ROOM) with a clear message, and nothing is written', async () => {
    const st = await fs.statfs(ws.out);
    const free = st.bavail * st.bsize;
    // A sparse file bigger than the free space: 1 TiB, or 4 PiB on a disk that has more.
    const size = free < 2 ** 40 ? 2 ** 40 : 4 * 2 ** 50;
    const file = path.join(ws.src, 'huge.img');
    await sparseFile(file, size);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--once']);
    const sent = await send(file, address);
    expect(sent.code, sent.stderr).toBe(6);
    expect(sent.last).toMatchObject({ event: 'error', code: 'E_NO_ROOM', exitCode: 6 });
    expect(sent.last!.message).toMatch(new RegExp(`needs ${size} bytes.* \\d+ bytes free`));
    expect(sent.stderr).toMatch(/E_NO_ROOM, exit 6/);
    expect(await exitWithin(receiver, 10_000, 'the --once receiver')).toBe(6);
    expect(await filesUnder(ws.out)).toEqual([]);
    expect(await visible(ws.out)).toEqual([]);
  });
});

// ---- 10. --log -----------------------------------------------------------------------------

describe('the receiver --log (tcp)', () => {
  it('has one JSON line per transfer, the refused one too, with peer, result, files, bytes and entries[].digest', async () => {
    const log = path.join(ws.root, 'transfers.log');
    const { proc: receiver, address } = await startReceiver(ws.out, ['--log', log]);
    const ok = path.join(ws.src, 'ok.bin');
    await fs.writeFile(ok, seededBytes(40_000, 81));
    const first = await send(ok, address);
    expect(first.code, first.stderr).toBe(0);
    // The same name again with other bytes: refused (E_EXISTS).
    await fs.writeFile(ok, seededBytes(41_000, 82));
    const second = await send(ok, address);
    expect(second.code, second.stderr).toBe(6);
    await waitForCount(receiver, (e) => e.event === 'done' || e.event === 'error', 2);
    // Stopping the receiver flushes its log.
    receiver.child.kill('SIGTERM');
    await exitWithin(receiver, 10_000, 'the receiver after SIGTERM');

    const lines = (await fs.readFile(log, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(2);
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown> & { entries: Array<Record<string, unknown>> });
    for (const l of [a!, b!]) {
      expect(l.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(l).toHaveProperty('files', 1);
      expect(l.entries).toHaveLength(1);
      expect(l.entries[0]).toHaveProperty('digest');
    }
    expect(a).toMatchObject({ result: 'ok', files: 1, bytes: 40_000, transport: 'tcp', session: first.last!.session });
    expect(a!.entries[0]).toMatchObject({ name: 'ok.bin', bytes: 40_000, result: 'committed', digest: first.last!.hash });
    expect(b).toMatchObject({ result: 'failed', code: 'E_EXISTS', files: 1, bytes: 41_000, session: second.last!.session });
    expect(b!.entries[0]).toMatchObject({ name: 'ok.bin', bytes: 41_000, result: 'failed', code: 'E_EXISTS' });
  });
});

// ---- 11. Many senders at once ----------------------------------------------------------------

describe('50 senders at once (25 tcp, 25 udp) against one receiver process', () => {
  it('commits all 50 files, each byte-identical under its own name', async () => {
    const size = 256 * 1024;
    const { proc: receiver, port } = await startReceiver(ws.out);
    const jobs = Array.from({ length: 50 }, (_, i) => {
      const transport: Kind = i % 2 === 0 ? 'tcp' : 'udp';
      return { name: `sender-${String(i).padStart(2, '0')}-${transport}.bin`, transport, data: seededBytes(size, 1000 + i) };
    });
    for (const j of jobs) await fs.writeFile(path.join(ws.src, j.name), j.data);
    // In this process (real sockets): 50 Node processes would not start quickly on two cores.
    const settled = await within(
      Promise.allSettled(
        jobs.map((j) =>
          sendInProcess({
            sources: [path.join(ws.src, j.name)],
            target: { host: '127.0.0.1', port },
            hash: DEFAULT_SEND_OPTIONS.hash,
            chunkSize: DEFAULT_SEND_OPTIONS.chunkSize,
            timeoutMs: 20_000,
            transport: j.transport,
            udp: DEFAULT_SEND_OPTIONS.udp,
          }),
        ),
      ),
      45_000,
      () => `50 senders; receiver stderr:\n${receiver.stderr()}`,
    );
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [`${jobs[i]!.name}: ${String(s.reason)}`] : []));
    expect(failures).toEqual([]);
    const results = settled.map((s) => (s as PromiseFulfilledResult<TransferResult>).value);
    for (const [i, r] of results.entries()) {
      expect(r).toMatchObject({ transport: jobs[i]!.transport, committed: 1, failed: 0 });
      expect(r.entries).toMatchObject([{ name: jobs[i]!.name, result: 'committed', bytes: size }]);
    }
    const done = await waitForCount(receiver, isDone, 50);
    expect(done.map((e) => e.name).sort()).toEqual(jobs.map((j) => j.name).sort());
    expect(done.filter((e) => e.transport === 'udp')).toHaveLength(25);
    expect(receiver.events.filter((e) => e.event === 'error')).toEqual([]);
    for (const j of jobs) expect(await sha256File(path.join(ws.out, j.name)), j.name).toBe(sha256(j.data));
    expect(await visible(ws.out)).toEqual(jobs.map((j) => j.name).sort());
  });
});

// ---- 12. --max-sessions --------------------------------------------------------------------

describe('--max-sessions 1 (tcp)', () => {
  it('while one slow transfer runs, a second sender is told E_BUSY and exits 4', async () => {
    const slowFile = path.join(ws.src, 'slow.bin');
    await randomFile(slowFile, 8 * MiB);
    const other = path.join(ws.src, 'other.bin');
    await randomFile(other, 10_000);
    const { proc: receiver, address } = await startReceiver(ws.out, ['--max-sessions', '1']);
    const slow = sockxfer(['send', slowFile, address, '--json', '--rate', '8M']);
    await within(receiver.waitFor((e) => e.event === 'start'), 10_000, () => `the slow transfer to start; stderr:\n${receiver.stderr()}`);

    const busy = await send(other, address);
    expect(busy.code, busy.stderr).toBe(4);
    expect(busy.last).toMatchObject({ event: 'error', code: 'E_BUSY', exitCode: 4 });
    expect(await receiver.waitFor((e) => e.event === 'error' && e.code === 'E_BUSY')).toMatchObject({ exitCode: 4 });
    // The first transfer was still going when the second was turned away.
    expect(slow.events.some(isDone)).toBe(false);
    slow.child.kill('SIGKILL');
    await exitWithin(slow, 5000, 'the slow sender');
    expect(await visible(ws.out)).toEqual([]);
  });
});
