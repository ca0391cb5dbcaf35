/** The session rule both transports apply to the frames of a connection. */
import { SockxferError } from '../errors.js';
import type { Frame } from '../protocol/index.js';

/**
 * Why a frame of `session` does not belong on the connection of `expected`, or null when it does.
 * An ERROR with session 0 is let through: it is a receiver failing before it learned the session.
 */
export function foreignSession(frame: Frame, session: bigint, expected: bigint): SockxferError | null {
  if (session === expected || (frame.type === 'error' && session === 0n)) return null;
  return new SockxferError('E_PROTOCOL', `frame for session ${session.toString(16)} on the connection of session ${expected.toString(16)}`);
}
