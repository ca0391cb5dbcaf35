/** Small helpers for talking to the peer through a Transport. */
import { SockxferError, codeFromWire } from '../errors.js';
import type { ErrorFrame, Frame, RefuseFrame, VerdictFrame } from '../protocol/index.js';
import type { Transport } from '../transport/index.js';
import { printableName } from './names.js';

/** The error a peer's ERROR, REFUSE or failed VERDICT frame stands for. */
export function peerError(frame: ErrorFrame | RefuseFrame | VerdictFrame, transport: Transport): SockxferError {
  const what = frame.type === 'refuse' ? 'refused' : frame.type === 'verdict' ? 'did not commit' : 'reported an error';
  const code = codeFromWire(frame.code);
  // A peer stopped by a signal is, for this side, a connection that went away: worth retrying, not "we were interrupted".
  const local = code === 'E_INTERRUPTED' ? 'E_CONNECTION_LOST' : code;
  return new SockxferError(local, `${transport.remote} ${what}: ${printableName(frame.message)}`, { remote: true });
}

type FrameOf<T extends Frame['type']> = Extract<Frame, { type: T }>;

/**
 * The next frame, which must be one of `types`. A peer's ERROR frame is thrown as the error
 * it carries; any other frame is a protocol error.
 */
export async function expectFrame<T extends Frame['type']>(transport: Transport, ...types: T[]): Promise<FrameOf<T>> {
  const frame = await transport.receive();
  if ((types as string[]).includes(frame.type)) return frame as FrameOf<T>;
  if (frame.type === 'error') throw peerError(frame, transport);
  throw new SockxferError('E_PROTOCOL', `expected ${types.join(' or ')} from ${transport.remote}, got ${frame.type}`);
}
