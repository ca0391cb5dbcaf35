/** The pre-shared key: from --key-file or SOCKXFER_KEY, never from an argument (where `ps` shows it). */
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { SockxferError, toSockxferError } from '../errors.js';
import { MIN_KEY_BYTES } from '../protocol/index.js';

/** The environment variable a key may come from. */
export const KEY_ENV = 'SOCKXFER_KEY';
/** A key file larger than this is not a key file. */
const MAX_KEY_FILE = 64 * 1024;

export interface LoadedKey {
  key: Buffer;
  /** Where it came from, for messages: the file, or the variable. */
  source: string;
  /** Something the user should hear about (a key file others can read). */
  warning?: string;
}

/** Trailing line ends and spaces are not part of a key (`echo secret > file` adds one). */
function trimmed(raw: Buffer): Buffer {
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d || raw[end - 1] === 0x20 || raw[end - 1] === 0x09)) end--;
  return raw.subarray(0, end);
}

function checked(key: Buffer, source: string): Buffer {
  if (key.length < MIN_KEY_BYTES) {
    throw new SockxferError('E_USAGE', `the key from ${source} is ${key.length} bytes; a key has at least ${MIN_KEY_BYTES} (make one with: sockxfer keygen FILE)`);
  }
  return key;
}

/** The key of --key-file `file` if given, else of SOCKXFER_KEY if set; null when neither is. */
export async function loadKey(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<LoadedKey | null> {
  if (file !== undefined) {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      throw new SockxferError(e.code, `cannot read the key file ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new SockxferError('E_USAGE', `the key file ${file} is not a file`);
      if (stat.size > MAX_KEY_FILE) throw new SockxferError('E_USAGE', `the key file ${file} is ${stat.size} bytes; a key file holds at most ${MAX_KEY_FILE}`);
      const key = checked(trimmed(await handle.readFile()), file);
      const warning = (stat.mode & 0o077) !== 0 ? `the key file ${file} can be read by others (mode ${(stat.mode & 0o777).toString(8)}); chmod 600 it` : undefined;
      return { key, source: file, ...(warning ? { warning } : {}) };
    } finally {
      await handle.close();
    }
  }
  const value = env[KEY_ENV];
  if (value === undefined || value === '') return null;
  return { key: checked(trimmed(Buffer.from(value, 'utf8')), KEY_ENV), source: KEY_ENV };
}

/** Writes a new random key (32 bytes, base64) to `file`, readable by its owner only; never overwrites. */
export async function writeNewKey(file: string): Promise<void> {
  try {
    await fs.writeFile(file, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    const e = toSockxferError(err, 'E_IO');
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new SockxferError('E_USAGE', `${file} exists; sockxfer keygen never overwrites a key`);
    throw new SockxferError(e.code, `cannot write the key file ${file}: ${(err as Error).message}`, { cause: err });
  }
}
