/** Which file names a receiver accepts: one plain path component that cannot escape or mislead. */
import { MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_PATH_DEPTH } from '../protocol/index.js';

// C0 and C1 control characters and DEL: they could move a terminal's cursor or hide text in logs.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Why `name` is not acceptable as a file name in the target folder, or null when it is. */
export function nameProblem(name: string): string | null {
  if (name.length === 0) return 'the name is empty';
  if (name === '.' || name === '..') return `"${name}" is not a file name`;
  if (name.includes('/') || name.includes('\\')) return 'the name contains a path separator (/ or \\)';
  if (CONTROL.test(name)) return 'the name contains a NUL or control character';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NAME_BYTES) return `the name is ${bytes} bytes long, the limit is ${MAX_NAME_BYTES}`;
  return null;
}

/**
 * Why `rel` is not acceptable as a relative path in the target folder, or null when it is: a
 * path of 1 to MAX_PATH_DEPTH components separated by "/", each of them acceptable as a name
 * (so no "", ".", "..", backslash, drive letter trick or control character can escape or mislead).
 */
export function pathProblem(rel: string): string | null {
  if (rel.length === 0) return 'the name is empty';
  const bytes = Buffer.byteLength(rel, 'utf8');
  if (bytes > MAX_PATH_BYTES) return `the path is ${bytes} bytes long, the limit is ${MAX_PATH_BYTES}`;
  const parts = rel.split('/');
  if (parts.length > MAX_PATH_DEPTH) return `the path is ${parts.length} levels deep, the limit is ${MAX_PATH_DEPTH}`;
  for (const part of parts) {
    const problem = nameProblem(part);
    if (problem) return parts.length === 1 ? problem : `a component of the path: ${problem}`;
  }
  return null;
}

/** The name with control characters shown as \xNN, so it is safe to print to a terminal or log. */
export function printableName(name: string): string {
  return name.replace(new RegExp(CONTROL.source, 'g'), (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** printableName, shortened for messages: a path of thousands of bytes must not crowd out the reason. */
export function shownName(name: string, max = 80): string {
  const p = printableName(name);
  return p.length <= max ? p : `${p.slice(0, max - 31)}…${p.slice(-30)}`;
}
