/**
 * Assertions on what a receiver keeps in `<dir>/.sockxfer-partial` (src/transfer/journal.ts):
 * while a file is in progress its data is there as `<key>.part`; when a transfer is cut short the
 * receiver keeps it for a resume as the pair `<key>.part` + `<key>.journal` (a temporary file that
 * cannot be resumed is removed); after a successful transfer the folder is gone.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { listDir } from './cli.js';
import { PARTIAL, partialEntries } from './tree.js';

/** What a resume key looks like: 32 lowercase hex characters. */
const KEY = /^[0-9a-f]{32}$/;

/** The data files (`*.part`) in `<dir>/.sockxfer-partial`: the files in progress, or kept for a resume. */
export async function partialDataFiles(dir: string): Promise<string[]> {
  return (await partialEntries(dir)).filter((n) => n.endsWith('.part'));
}

/**
 * Mid-transfer of the one file `name`: its data is being written in `.sockxfer-partial` (exactly
 * one `.part` there), and the target folder holds nothing else: not the final name, not a
 * temporary file beside it. Makes the checks after an interruption real ones.
 */
export async function expectInProgress(dir: string, name: string): Promise<void> {
  expect(await listDir(dir), `the target folder while ${name} is in progress`).toEqual([PARTIAL]);
  const parts = await partialDataFiles(dir);
  expect(parts, `the files in progress in ${PARTIAL}`).toHaveLength(1);
  expect(parts[0]).toMatch(/^[0-9a-f]{32}\.part$/);
}

export interface KeptPartial {
  key: string;
  journal: { v: number; name: string; size: number; mtimeMs: number; hash: string; ranges: Array<[number, number]> };
  /** Size of `<key>.part` on disk. */
  partSize: number;
}

/**
 * After a transfer of the one file `name` (`size` bytes) was cut short: nothing under the final
 * name; nothing in the target folder but `.sockxfer-partial`; and that folder holds only a resume
 * pair for this file (`<key>.part` + `<key>.journal`, same key, the journal describing `name` and
 * `size`, every durable range inside the file and inside the data on disk), or nothing at all.
 * Returns the pair kept, or null.
 */
export async function expectKeptForResume(dir: string, name: string, size: number): Promise<KeptPartial | null> {
  const final = await fs.lstat(path.join(dir, name)).catch((err: NodeJS.ErrnoException) => err.code);
  expect(final, `nothing may be under the final name ${name}`).toBe('ENOENT');
  expect((await listDir(dir)).filter((n) => n !== PARTIAL), 'the target folder, but for the partial folder').toEqual([]);

  const entries = await partialEntries(dir);
  const keys = [...new Set(entries.map((n) => n.replace(/\.(part|journal)$/, '')))].sort();
  for (const key of keys) expect(key, `${PARTIAL} holds ${JSON.stringify(entries)}: only <key>.part and <key>.journal belong there`).toMatch(KEY);
  // Pairs only: each key has both its data and its journal, and nothing else is there (no journal.tmp, no stray file).
  expect(entries, `${PARTIAL} must hold resume pairs only`).toEqual(keys.flatMap((k) => [`${k}.journal`, `${k}.part`]));
  // One file was in flight, so one pair at most (its key depends on the file's name, size, mtime and hash).
  expect(keys.length, `resume pairs in ${PARTIAL}: ${JSON.stringify(entries)}`).toBeLessThanOrEqual(1);
  if (keys.length === 0) return null;

  const key = keys[0]!;
  const partialDir = path.join(dir, PARTIAL);
  const part = await fs.lstat(path.join(partialDir, `${key}.part`));
  expect(part.isFile(), `${key}.part is a regular file`).toBe(true);
  expect(part.size, `${key}.part is no longer than the file`).toBeLessThanOrEqual(size);
  const text = await fs.readFile(path.join(partialDir, `${key}.journal`), 'utf8');
  let journal: KeptPartial['journal'];
  try {
    journal = JSON.parse(text) as KeptPartial['journal'];
  } catch (err) {
    throw new Error(`${key}.journal is not JSON (${(err as Error).message}): ${text}`, { cause: err });
  }
  expect(journal, `${key}.journal`).toMatchObject({ v: 1, name, size, mtimeMs: expect.any(Number), hash: expect.stringMatching(/^(xxh128|sha256)$/) });
  expect(Array.isArray(journal.ranges), `${key}.journal ranges: ${text}`).toBe(true);
  let last = 0;
  for (const r of journal.ranges) {
    const ok = Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] >= last && r[1] > r[0] && r[1] <= size && r[1] <= part.size;
    expect(ok, `${key}.journal: range ${JSON.stringify(r)} must be sorted, disjoint and within the file (${size} bytes) and its data on disk (${part.size} bytes): ${text}`).toBe(true);
    last = r[1];
  }
  return { key, journal, partSize: part.size };
}
