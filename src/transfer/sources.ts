/**
 * What a sender sends: the paths it was given, turned into a flat list of entries with relative
 * names ("photos", "photos/2024", "photos/2024/a.jpg"), folders before what they hold, in a
 * stable (byte-wise sorted) order. Symbolic links are skipped with a warning unless followed;
 * followed links that lead back into a folder being walked are skipped too (no cycles).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SockxferError, toSockxferError } from '../errors.js';

export interface Source {
  kind: 'file' | 'directory' | 'stream';
  /** Relative name on the wire: components joined by "/". */
  name: string;
  /** Where it is on this machine; null for standard input. */
  path: string | null;
  /** Bytes (files); 0 for folders and streams. */
  size: number;
  mode: number;
  mtimeMs: number;
}

export interface Skipped {
  path: string;
  reason: string;
}

export interface CollectOptions {
  followSymlinks?: boolean;
  /** The name standard input ("-") travels under. */
  streamName?: string;
  /** At most this many entries (a guard against walking a whole disk by mistake). */
  maxEntries?: number;
}

export const DEFAULT_MAX_ENTRIES = 10_000_000;

function sourceError(err: unknown, p: string): SockxferError {
  const e = toSockxferError(err, 'E_IO');
  return new SockxferError(e.code === 'E_INTERNAL' ? 'E_IO' : e.code, `cannot read ${p}: ${(err as Error).message}`, { cause: err });
}

/** Byte-wise order of UTF-8 names, the same on every machine and locale. */
function byName(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The entries for `paths` ("-" is standard input); skipped links and special files are listed, not thrown. */
export async function collectSources(paths: string[], options: CollectOptions = {}): Promise<{ sources: Source[]; skipped: Skipped[] }> {
  const sources: Source[] = [];
  const skipped: Skipped[] = [];
  const topNames = new Map<string, string>();
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const push = (s: Source) => {
    if (sources.length >= maxEntries) throw new SockxferError('E_USAGE', `more than ${maxEntries} files and folders to send`);
    sources.push(s);
  };
  if (paths.filter((p) => p === '-').length > 1) throw new SockxferError('E_USAGE', 'standard input ("-") can be sent once per transfer');

  for (const given of paths) {
    if (given === '-') {
      const name = options.streamName;
      if (name === undefined || name === '') throw new SockxferError('E_USAGE', 'sending standard input ("-") needs --name NAME');
      claim(topNames, name, '-');
      push({ kind: 'stream', name, path: null, size: 0, mode: 0o644, mtimeMs: Date.now() });
      continue;
    }
    const absolute = path.resolve(given);
    const name = path.basename(absolute);
    if (name === '' || absolute === path.parse(absolute).root) throw new SockxferError('E_USAGE', `cannot send the root folder ${given}`);
    let st = statOrThrow(fs.lstatSync, absolute, given);
    // A link named on the command line is followed: the user pointed at it.
    if (st.isSymbolicLink()) st = statOrThrow(fs.statSync, absolute, given);
    claim(topNames, name, given);
    // A file or folder named on the command line that cannot be read fails now, before connecting.
    try {
      fs.accessSync(absolute, fs.constants.R_OK);
    } catch (err) {
      throw sourceError(err, given);
    }
    if (st.isFile()) {
      push({ kind: 'file', name, path: absolute, size: st.size, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
    } else if (st.isDirectory()) {
      push({ kind: 'directory', name, path: absolute, size: 0, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
      walk(absolute, name, new Set([`${st.dev}:${st.ino}`]), options.followSymlinks ?? false, push, skipped);
    } else {
      throw new SockxferError('E_USAGE', `${given} is not a regular file or a folder`);
    }
  }
  return { sources, skipped };
}

function claim(names: Map<string, string>, name: string, given: string): void {
  const other = names.get(name);
  if (other !== undefined) throw new SockxferError('E_USAGE', `${other} and ${given} would both arrive as "${name}"`);
  names.set(name, given);
}

function statOrThrow(stat: (p: string) => fs.Stats, p: string, shown: string): fs.Stats {
  try {
    return stat(p);
  } catch (err) {
    throw sourceError(err, shown);
  }
}

/**
 * Walks a folder with synchronous calls: it runs before the connection exists, with nothing else
 * to do meanwhile, and a thread-pool round trip per entry made 2,000 small files take 0.2 s to list.
 */
function walk(dir: string, prefix: string, ancestors: Set<string>, follow: boolean, push: (s: Source) => void, skipped: Skipped[]): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort(byName);
  } catch (err) {
    throw sourceError(err, dir);
  }
  for (const child of names) {
    const p = path.join(dir, child);
    const name = `${prefix}/${child}`;
    let st = statOrThrow(fs.lstatSync, p, p);
    if (st.isSymbolicLink()) {
      if (!follow) {
        skipped.push({ path: p, reason: 'symbolic link (not followed; --follow-symlinks follows links)' });
        continue;
      }
      let target: fs.Stats | null = null;
      try {
        target = fs.statSync(p);
      } catch {
        // dangling
      }
      if (target === null) {
        skipped.push({ path: p, reason: 'symbolic link to nothing' });
        continue;
      }
      st = target;
    }
    if (st.isFile()) {
      push({ kind: 'file', name, path: p, size: st.size, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
    } else if (st.isDirectory()) {
      const id = `${st.dev}:${st.ino}`;
      if (ancestors.has(id)) {
        skipped.push({ path: p, reason: 'link back into a folder being sent (a cycle)' });
        continue;
      }
      push({ kind: 'directory', name, path: p, size: 0, mode: st.mode & 0o777, mtimeMs: Math.floor(st.mtimeMs) });
      ancestors.add(id);
      walk(p, name, ancestors, follow, push, skipped);
      ancestors.delete(id);
    } else {
      skipped.push({ path: p, reason: 'not a regular file or folder (socket, pipe or device)' });
    }
  }
}
