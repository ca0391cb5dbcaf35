/**
 * Resume journals. Every file in progress lives in `<folder>/.sockxfer-partial/` under a name
 * derived from what identifies its source (relative name, size, mtime, hash algorithm), beside a
 * small JSON journal of the byte ranges known durable: it is rewritten (write, then rename) only
 * after an fdatasync of the data, so it never claims more than the disk holds. When the same
 * file is offered again, the receiver offers those ranges back and the sender sends the rest; a
 * source that changed has another key and starts over. Partial data older than the TTL goes.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { HashAlgorithm, OfferEntry } from '../protocol/index.js';
import { SockxferError } from '../errors.js';
import { PART_SUFFIX } from './part-file.js';

/** The folder (inside the receiver's folder) that holds files in progress and their journals. */
export const PARTIAL_DIR = '.sockxfer-partial';
export const JOURNAL_SUFFIX = '.journal';
export const DEFAULT_PARTIAL_TTL_MS = 24 * 60 * 60 * 1000;

export interface Journal {
  v: 1;
  name: string;
  size: number;
  mtimeMs: number;
  hash: HashAlgorithm;
  /** Durable byte ranges [start, end), sorted, merged. */
  ranges: Array<[number, number]>;
}

/** The key a file's partial data is kept under: the same source (name, size, mtime, hash) finds it again. */
export function resumeKey(entry: OfferEntry, hash: HashAlgorithm): string {
  return createHash('sha256').update(JSON.stringify([entry.name, entry.size, entry.mtimeMs, hash])).digest('hex').slice(0, 32);
}

/**
 * True when the partial folder is a real folder. Paths into it are resolved again at each call,
 * and a folder a local user swapped for a link (to anywhere) is not written, read or cleaned
 * through: the receiver's files in progress stay inside its own folder.
 */
async function partialDirIsReal(root: string): Promise<boolean> {
  const st = await fs.lstat(path.join(root, PARTIAL_DIR)).catch(() => null);
  return st !== null && st.isDirectory();
}

export function partialPaths(root: string, key: string): { part: string; journal: string } {
  const dir = path.join(root, PARTIAL_DIR);
  return { part: path.join(dir, `${key}${PART_SUFFIX}`), journal: path.join(dir, `${key}${JOURNAL_SUFFIX}`) };
}

/** The journal for `key`, when it exists, describes this very entry, and its data file is there and long enough. */
export async function readJournal(root: string, key: string, entry: OfferEntry, hash: HashAlgorithm): Promise<Journal | null> {
  const { part, journal } = partialPaths(root, key);
  if (!(await partialDirIsReal(root))) return null;
  let j: Journal;
  try {
    // Only a regular file of our own making is a journal: not a link planted there.
    if (!(await fs.lstat(journal)).isFile()) return null;
    j = JSON.parse(await fs.readFile(journal, 'utf8')) as Journal;
  } catch {
    return null;
  }
  if (j === null || typeof j !== 'object' || j.v !== 1 || j.name !== entry.name || j.size !== entry.size || j.mtimeMs !== entry.mtimeMs || j.hash !== hash || !Array.isArray(j.ranges)) return null;
  const st = await fs.lstat(part).catch(() => null);
  // A link (symbolic, or a second hard link to a file elsewhere) is not partial data to write on:
  // resuming into it would write the chunks not held into whatever it is linked to.
  if (!st || !st.isFile() || st.nlink !== 1) return null;
  let last = 0;
  for (const r of j.ranges) {
    if (!Array.isArray(r) || !Number.isSafeInteger(r[0]) || !Number.isSafeInteger(r[1]) || r[0] < last || r[1] <= r[0] || r[1] > entry.size || r[1] > st.size) return null;
    last = r[1];
  }
  return j;
}

/**
 * Writes the journal atomically (a temporary file renamed over it). The temporary file is always
 * a new one (O_CREAT | O_EXCL, after removing a stale one): whatever else sits at its name, a link
 * planted there above all, is never opened, so nothing is written through it.
 */
export async function writeJournal(root: string, key: string, journal: Journal): Promise<void> {
  const { journal: p } = partialPaths(root, key);
  if (!(await partialDirIsReal(root))) throw new SockxferError('E_BAD_NAME', `${PARTIAL_DIR} is not a real folder in the target folder (a symbolic link?); no journal written through it`);
  const tmp = `${p}.tmp`;
  await fs.unlink(tmp).catch(() => {});
  await fs.writeFile(tmp, JSON.stringify(journal), { flag: 'wx', mode: 0o600 });
  await fs.rename(tmp, p);
}

/** Removes a journal and (optionally) its data file; never throws. */
export async function removePartial(root: string, key: string, withData: boolean): Promise<void> {
  const { part, journal } = partialPaths(root, key);
  if (!(await partialDirIsReal(root))) return;
  await fs.unlink(journal).catch(() => {});
  await fs.unlink(`${journal}.tmp`).catch(() => {});
  if (withData) await fs.unlink(part).catch(() => {});
}

/** Files a receiver makes in the partial folder: `<key>.part`, `<key>.journal` (and its `.tmp`), and part-file.ts's `.sockxfer-<random>-<name>.part`. */
const OWN_NAME = /^(?:[0-9a-f]{32}\.(?:part|journal|journal\.tmp)|\.sockxfer-[0-9a-f]{12}-[^]*\.part)$/;

/**
 * Removes files in the partial folder not modified for `ttlMs`, but for keys in `active`.
 * Returns how many files it removed. Never throws.
 */
export async function cleanPartials(root: string, ttlMs: number, active: ReadonlySet<string>, now = Date.now()): Promise<number> {
  const dir = path.join(root, PARTIAL_DIR);
  let names: string[];
  try {
    // readdir follows links: a partial folder that is a link (to anywhere) is not ours to clean.
    if (!(await partialDirIsReal(root))) return 0;
    names = await fs.readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    // Only what a receiver writes here: anything else is not its to remove.
    if (!OWN_NAME.test(name)) continue;
    const key = name.split('.')[0]!;
    if (active.has(key)) continue;
    const p = path.join(dir, name);
    const st = await fs.lstat(p).catch(() => null);
    if (!st || !st.isFile() || now - st.mtimeMs < ttlMs) continue;
    await fs
      .unlink(p)
      .then(() => removed++)
      .catch(() => {});
  }
  return removed;
}
