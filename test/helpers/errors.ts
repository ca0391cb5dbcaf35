/** Assertions on SockxferError. */
import { expect } from 'vitest';
import { SockxferError, type ErrorCode } from '../../src/errors.js';

/** Runs fn, expects a SockxferError with `code` (and a message matching `message`), returns it. */
export function expectError(fn: () => unknown, code: ErrorCode, message?: RegExp): SockxferError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected a SockxferError to be thrown').toBeInstanceOf(SockxferError);
  const err = thrown as SockxferError;
  expect(err.code).toBe(code);
  if (message) expect(err.message).toMatch(message);
  return err;
}
