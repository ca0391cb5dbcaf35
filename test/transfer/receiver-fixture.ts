/**
 * One in-process Receiver per test (see useReceiverFixture), on 127.0.0.1 port 0, and the checks
 * every hostile-sender test ends with. The target folder is `base/out`, so that a write that
 * escapes it shows up in `base`; `base/elsewhere` is a folder a link in the target may point to.
 *
 * The receiver keeps files in progress in its own folder, `.sockxfer-partial`, and keeps the
 * data of a file cut short there (with a journal of what is durable) for a later resume. So
 * "nothing left" means: nothing in the target folder but that one, and in that one nothing at
 * all, or (after a session that broke off in the middle of a file's data) only resume data:
 * `<key>.part` files each beside its `<key>.journal`.
 *
 * The bindings below (port, target, events, …) are live: they change with each test.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { SockxferError, type ErrorCode } from '../../src/errors.js';
import { MAX_ENTRY_MESSAGE_BYTES, WHOLE_TRANSFER, type AcceptEntry, type HashAlgorithm, type VerdictFrame } from '../../src/protocol/index.js';
import type { TransferResult } from '../../src/transfer/events.js';
import { PARTIAL_DIR } from '../../src/transfer/journal.js';
import type { Receiver, ReceiverOptions } from '../../src/transfer/receiver.js';
import { sendFile } from '../../src/transfer/sender.js';
import { seededBytes } from '../helpers/seeded.js';
import { destroyFakeSenders, digestOf, listTree, startReceiver as startAt, type ReceiverEvents } from './harness.js';

// eslint-disable-next-line no-control-regex
export const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export let base: DirectoryResult;
export let target: string;
export let elsewhere: string;
export let source: DirectoryResult;
export let receiver: Receiver;
export let port: number;
export let events: ReceiverEvents;

/** Starts a receiver with `options` on the target folder (beforeEach starts one with the defaults). */
export async function startReceiver(options: Partial<ReceiverOptions> = {}): Promise<void> {
  ({ receiver, port, events } = await startAt(target, options));
}

/** Stops the receiver of beforeEach and starts one with `options` on the same folder. */
export async function restartReceiver(options: Partial<ReceiverOptions>): Promise<void> {
  await receiver.stop(new SockxferError('E_INTERRUPTED', 'restart'));
  await startReceiver(options);
}

/** Registers the hooks that give every test of the calling file a fresh receiver and folders. */
export function useReceiverFixture(): void {
  beforeEach(async () => {
    base = await dir({ unsafeCleanup: true });
    source = await dir({ unsafeCleanup: true });
    target = path.join(base.path, 'out');
    elsewhere = path.join(base.path, 'elsewhere');
    await fs.mkdir(elsewhere);
    await startReceiver();
  });

  afterEach(async () => {
    destroyFakeSenders();
    await receiver.stop(new SockxferError('E_INTERRUPTED', 'test over'));
    await base.cleanup();
    await source.cleanup();
  });
}

/** Writes a source file and sends it with sendFile; checks it arrived byte for byte, with mode and mtime. */
export async function honestTransfer(name: string, content: Buffer, options: { chunkSize?: number; hash?: HashAlgorithm } = {}): Promise<TransferResult> {
  const file = path.join(source.path, name);
  await fs.writeFile(file, content);
  await fs.chmod(file, 0o640);
  const mtime = new Date(Date.UTC(2022, 1, 3, 4, 5, 6, 789));
  await fs.utimes(file, mtime, mtime);
  const hash = options.hash ?? 'xxh128';
  const result = await sendFile({ file, target: { host: '127.0.0.1', port }, hash, chunkSize: options.chunkSize ?? 1024, timeoutMs: 10_000 });
  const expectedDigest = (await digestOf(hash, content)).toString('hex');
  expect(result).toMatchObject({ name, bytes: content.length, hash, transport: 'tcp', digest: expectedDigest, committed: 1, failed: 0 });
  const done = await events.done.next();
  expect(done).toMatchObject({ name, bytes: content.length, digest: expectedDigest, path: path.join(target, name), committed: 1, failed: 0 });
  const arrived = path.join(target, name);
  expect((await fs.readFile(arrived)).equals(content)).toBe(true);
  const st = await fs.stat(arrived);
  expect(st.mode & 0o777).toBe(0o640);
  expect(Math.floor(st.mtimeMs)).toBe(Math.floor((await fs.stat(file)).mtimeMs));
  expect(Math.abs(st.mtimeMs - mtime.getTime())).toBeLessThan(1);
  return result;
}

/** The target folder as its user sees it: every path but the receiver's folder of files in progress. */
export async function visibleTree(): Promise<string[]> {
  return (await listTree(target)).filter((p) => p !== PARTIAL_DIR && !p.startsWith(`${PARTIAL_DIR}/`));
}

/** What the receiver's folder of files in progress holds (nothing when it does not exist). */
export async function partialFiles(): Promise<string[]> {
  return fs.readdir(path.join(target, PARTIAL_DIR)).then(
    (names) => names.sort(),
    () => [],
  );
}

/** `names` are resume data only: `<key>.part` files, each with its `<key>.journal`, nothing else. */
export function expectResumeDataOnly(names: string[]): void {
  for (const n of names) expect(n).toMatch(/^[0-9a-f]{32}\.(part|journal)$/);
  const keys = (suffix: string) => names.filter((n) => n.endsWith(suffix)).map((n) => n.slice(0, -suffix.length));
  expect(keys('.part')).toEqual(keys('.journal'));
}

/**
 * The target folder holds exactly `keep` and no temporary file (but, with `resume`, resume data),
 * nothing appeared beside it, `elsewhere` is still empty, and an honest transfer still works.
 */
export async function expectCleanAndStillServing(keep: string[], resume = false): Promise<void> {
  expect(await visibleTree()).toEqual([...keep].sort());
  const partial = await partialFiles();
  if (resume) expectResumeDataOnly(partial);
  else expect(partial).toEqual([]);
  expect((await fs.readdir(base.path)).sort()).toEqual(['elsewhere', 'out']);
  expect(await fs.readdir(elsewhere)).toEqual([]);
  await honestTransfer('honest.bin', seededBytes(5000, 99));
  expect(await visibleTree()).toEqual([...keep, 'honest.bin'].sort());
  expect(await partialFiles()).toEqual(partial);
  expect(events.failed.length).toBe(0);
}

/**
 * After a hostile session that failed as a whole with `code`: clean, and still serving. `resume`:
 * the session broke off in the middle of a file's data, which the receiver may keep for a resume.
 */
export async function expectCleanAndServing(code: ErrorCode, keep: string[] = [], resume = false): Promise<void> {
  const failure = await events.failed.next();
  expect(failure.error).toBeInstanceOf(SockxferError);
  expect(failure.error.code).toBe(code);
  await expectCleanAndStillServing(keep, resume);
}

/** After a transfer that ended normally but with the entries in `failures` failed: clean, and still serving. */
export async function expectEntriesFailedCleanAndServing(failures: Array<[number, ErrorCode]>, keep: string[] = []): Promise<TransferResult> {
  const done = await events.done.next();
  expect(done.failed).toBe(failures.length);
  for (const [index, code] of failures) expect(done.entries[index]).toMatchObject({ index, result: 'failed', code });
  await expectCleanAndStillServing(keep);
  return done;
}

/** The VERDICTs of a transfer whose only entry failed with `code`: that, then the whole transfer's. */
export function expectOnlyFailed(verdicts: VerdictFrame[], code: number): void {
  expect(verdicts).toMatchObject([
    { type: 'verdict', index: 0, status: 'failed', code, path: '' },
    { type: 'verdict', index: WHOLE_TRANSFER, status: 'committed', code: 0 },
  ]);
}

/**
 * A refused ACCEPT entry: the code, and a message matching `message`, with no control character
 * in it and within the per-entry limit (long messages are cut there).
 */
export function expectRefused(accept: AcceptEntry | undefined, index: number, code: number, message: RegExp): void {
  expect(accept).toMatchObject({ index, action: 'refuse', code, digest: Buffer.alloc(0), have: [] });
  expect(accept!.message).toMatch(message);
  expect(accept!.message).not.toMatch(CONTROL);
  expect(Buffer.byteLength(accept!.message)).toBeLessThanOrEqual(MAX_ENTRY_MESSAGE_BYTES);
}
