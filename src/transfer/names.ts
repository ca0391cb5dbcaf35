/** Which file names a receiver accepts: one plain path component that cannot escape or mislead. */
import { MAX_NAME_BYTES } from '../protocol/index.js';

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

/** The name with control characters shown as \xNN, so it is safe to print to a terminal or log. */
export function printableName(name: string): string {
  return name.replace(new RegExp(CONTROL.source, 'g'), (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
