/**
 * One error class for every failure sockxfer reports, with a stable code per failure.
 *
 * Each code has an exit status (what a script branches on) and a wire number (what the
 * peer is told in REFUSE, VERDICT and ERROR frames). Wire numbers are exit*100 + n, so a
 * peer that does not know a newer code can still map it to the right exit status.
 */

export interface ErrorCodeInfo {
  /** Process exit status for this failure. */
  readonly exit: number;
  /** Number carried on the wire; never reuse or renumber one. */
  readonly wire: number;
  /** One line for the README table and `--help`. */
  readonly description: string;
}

export const ERROR_CODES = {
  E_INTERNAL: { exit: 1, wire: 100, description: 'a bug in sockxfer: please report it' },
  E_USAGE: { exit: 2, wire: 200, description: 'bad arguments or options' },
  E_CONNECT_REFUSED: { exit: 3, wire: 300, description: 'nothing listens at the address (connection refused)' },
  E_UNREACHABLE: { exit: 3, wire: 301, description: 'host or network unreachable, or the name did not resolve' },
  E_CONNECTION_LOST: { exit: 3, wire: 302, description: 'the peer reset or closed the connection mid-transfer' },
  E_LISTEN: { exit: 3, wire: 303, description: 'cannot listen on the address (in use, or not an address of this machine)' },
  E_TIMEOUT: { exit: 4, wire: 400, description: 'connect, handshake or idle timeout' },
  E_BUSY: { exit: 4, wire: 401, description: 'the receiver serves its --max-sessions already; try again later' },
  E_CHECKSUM: { exit: 5, wire: 500, description: 'a frame or chunk failed its CRC32C check' },
  E_HASH_MISMATCH: { exit: 5, wire: 501, description: 'the whole-file hash did not match' },
  E_REFUSED: { exit: 6, wire: 600, description: 'the receiver refused the transfer (policy)' },
  E_EXISTS: { exit: 6, wire: 601, description: 'the target file exists and the receiver does not overwrite' },
  E_BAD_NAME: { exit: 6, wire: 602, description: 'the offered file name is not acceptable' },
  E_UNSUPPORTED: { exit: 6, wire: 603, description: 'the receiver does not support what was offered' },
  E_LIMIT: { exit: 6, wire: 604, description: "over a limit of the receiver's (--max-size, --max-files)" },
  E_NO_ROOM: { exit: 6, wire: 605, description: "the receiver's folder has not the free space the offer needs" },
  E_AUTH: { exit: 7, wire: 700, description: 'authentication failed' },
  E_IO: { exit: 8, wire: 800, description: 'local I/O error (read or write failed)' },
  E_NOT_FOUND: { exit: 8, wire: 801, description: 'the source file or target folder does not exist' },
  E_PERMISSION: { exit: 8, wire: 802, description: 'permission denied' },
  E_NO_SPACE: { exit: 8, wire: 803, description: 'no space left on the device' },
  E_PROTOCOL: { exit: 9, wire: 900, description: 'the peer broke the protocol (malformed or unexpected frame)' },
  E_VERSION: { exit: 9, wire: 901, description: 'the peer speaks a protocol version this sockxfer does not' },
  E_SOURCE_CHANGED: { exit: 10, wire: 1000, description: 'a source file changed or vanished while it was being sent' },
  E_INTERRUPTED: { exit: 130, wire: 13000, description: 'interrupted (SIGINT or SIGTERM)' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

const BY_WIRE = new Map<number, ErrorCode>(
  (Object.keys(ERROR_CODES) as ErrorCode[]).map((code) => [ERROR_CODES[code].wire, code]),
);

/** The error every sockxfer layer throws; `code` says what failed, `exitCode` what the CLI exits with. */
export class SockxferError extends Error {
  readonly code: ErrorCode;
  /** True when the failure was reported by the peer rather than found locally. */
  readonly remote: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; remote?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SockxferError';
    this.code = code;
    this.remote = options.remote ?? false;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get wireCode(): number {
    return ERROR_CODES[this.code].wire;
  }
}

/** Maps a wire number from a peer to a code; unknown numbers keep their exit class (wire / 100). */
export function codeFromWire(wire: number): ErrorCode {
  const known = BY_WIRE.get(wire);
  if (known) return known;
  const exit = Math.floor(wire / 100);
  const sameClass = (Object.keys(ERROR_CODES) as ErrorCode[]).find((c) => ERROR_CODES[c].exit === exit);
  return sameClass ?? 'E_PROTOCOL';
}

/** Wraps anything thrown into a SockxferError, keeping the original as `cause`. */
export function toSockxferError(err: unknown, fallback: ErrorCode = 'E_INTERNAL'): SockxferError {
  if (err instanceof SockxferError) return err;
  const sys = err as NodeJS.ErrnoException | undefined;
  const message = sys && typeof sys.message === 'string' ? sys.message : String(err);
  const code = sys && typeof sys.code === 'string' ? errnoToCode(sys.code) : undefined;
  return new SockxferError(code ?? fallback, message, { cause: err });
}

/** The sockxfer code for a Node system error code (ECONNREFUSED, ENOSPC, …), if it has one. */
export function errnoToCode(errno: string): ErrorCode | undefined {
  switch (errno) {
    case 'ECONNREFUSED':
      return 'E_CONNECT_REFUSED';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return 'E_UNREACHABLE';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ECONNABORTED':
    case 'ERR_STREAM_DESTROYED':
    case 'ERR_STREAM_WRITE_AFTER_END':
      return 'E_CONNECTION_LOST';
    case 'EADDRINUSE':
      return 'E_LISTEN';
    case 'ETIMEDOUT':
      return 'E_TIMEOUT';
    case 'ENOENT':
      return 'E_NOT_FOUND';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'E_PERMISSION';
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return 'E_NO_SPACE';
    case 'EIO':
    case 'EISDIR':
    case 'ENOTDIR':
    case 'EMFILE':
    case 'ENFILE':
      return 'E_IO';
    default:
      return undefined;
  }
}
