/**
 * Helpers for backup-style end-to-end tests: folder trees (build one with modes and mtimes, scan
 * one back), the receiver's partial-data folder, and a way to run the built CLI with standard
 * input piped in and standard output kept as raw bytes (for `send -` and `receive --stdout`).
 * Processes started here are stopped by `stopRaw()` (call in afterEach), as cli.ts does for its own.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Proc } from './cli.js';

// ---- Trees --------------------------------------------------------------------------------

export type TreeSpec =
  | { kind: 'directory'; rel: string; mode: number; mtime: Date }
  | { kind: 'file'; rel: string; mode: number; mtime: Date; content: Buffer }
  | { kind: 'symlink'; rel: string; target: string };

/**
 * Builds `spec` under `root`: folders and files first, links next, then modes, then mtimes
 * (files, then folders deepest first: creating anything inside a folder changes its mtime).
 */
export async function buildTree(root: string, spec: TreeSpec[]): Promise<void> {
  const abs = (rel: string) => path.join(root, ...rel.split('/'));
  for (const e of spec) {
    if (e.kind === 'directory') await fs.mkdir(abs(e.rel), { recursive: true });
  }
  for (const e of spec) {
    if (e.kind === 'file') await fs.writeFile(abs(e.rel), e.content);
    else if (e.kind === 'symlink') await fs.symlink(e.target, abs(e.rel));
  }
  for (const e of spec) if (e.kind !== 'symlink') await fs.chmod(abs(e.rel), e.mode);
  for (const e of spec) if (e.kind === 'file') await setMtime(abs(e.rel), e.mtime);
  const dirs = spec.filter((e): e is Extract<TreeSpec, { kind: 'directory' }> => e.kind === 'directory');
  dirs.sort((a, b) => b.rel.split('/').length - a.rel.split('/').length);
  for (const d of dirs) await setMtime(abs(d.rel), d.mtime);
}

/**
 * Sets atime and mtime to `when`, to the millisecond. utimes takes float seconds and libuv
 * truncates them to microseconds, so a Date's 06.100 would land as 06.099999: half a
 * microsecond more lands exactly.
 */
export async function setMtime(p: string, when: Date): Promise<void> {
  const seconds = when.getTime() / 1000 + 5e-7;
  await fs.utimes(p, seconds, seconds);
}

export interface ScannedEntry {
  kind: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  mtimeMs: number;
  size: number;
  /** SHA-256 hex of a file's bytes. */
  sha256?: string;
}

/** Every entry under `root` by its "/"-joined relative name (without following links), `skip` names left out. */
export async function scanTree(root: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, ScannedEntry>> {
  const out = new Map<string, ScannedEntry>();
  const walk = async (dir: string, prefix: string) => {
    for (const name of (await fs.readdir(dir)).sort()) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      if (skip(rel)) continue;
      const p = path.join(dir, name);
      const st = await fs.lstat(p);
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
      const entry: ScannedEntry = { kind, mode: st.mode & 0o777, mtimeMs: st.mtimeMs, size: st.size };
      if (kind === 'file') entry.sha256 = createHash('sha256').update(await fs.readFile(p)).digest('hex');
      out.set(rel, entry);
      if (kind === 'directory') await walk(p, rel);
    }
  };
  await walk(root, '');
  return out;
}

/** SHA-256 hex of a buffer. */
export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

// ---- The receiver's partial data ------------------------------------------------------------

export const PARTIAL = '.sockxfer-partial';

/** Names in `<dir>/.sockxfer-partial` (none when the folder is missing). */
export async function partialEntries(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(path.join(dir, PARTIAL))).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Writes `data` to `proc`'s stdin in pieces of `piece` bytes, waiting for drain, then ends it. */
export async function feedStdin(proc: Proc, data: Buffer, piece: number): Promise<void> {
  const stdin = proc.child.stdin!;
  for (let at = 0; at < data.length; at += piece) {
    if (!stdin.write(data.subarray(at, at + piece))) await new Promise<void>((resolve) => stdin.once('drain', resolve));
  }
  await new Promise<void>((resolve) => stdin.end(resolve));
}
