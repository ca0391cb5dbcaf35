/** What the transfer layer tells its caller; the command layer turns these into bars, lines and JSON. */
import type { ErrorCode } from '../errors.js';
import type { EntryKind, HashAlgorithm } from '../protocol/index.js';
import type { TransportKind, TransportStats } from '../transport/index.js';

export interface TransferInfo {
  /** The session id in hex; tells concurrent transfers apart in a receiver's events. */
  session: string;
  /** The one entry's name, or the first top-level name and how many more ("photos (+2 more)"). */
  name: string;
  /** Files and streams in the transfer (folders not counted). */
  files: number;
  /** Bytes of all files (streams count as 0 until they end). */
  bytes: number;
  hash: HashAlgorithm;
  transport: TransportKind;
  /** The other side, "host:port". */
  peer: string;
  /** Authenticated with the pre-shared key and encrypted (AES-256-GCM). */
  encrypted: boolean;
}

/** How one entry ended. */
export type EntryOutcome = 'committed' | 'up-to-date' | 'failed';

export interface EntryResult {
  index: number;
  kind: EntryKind;
  name: string;
  bytes: number;
  /** Whole-file digest in hex (null for folders and for failures before a hash was known). */
  digest: string | null;
  result: EntryOutcome;
  /** Why it failed. */
  code?: ErrorCode;
  message?: string;
  /** Where it is: on the receiver, the absolute path; on the sender, the path relative to the receiver's folder. */
  path?: string;
  /** Sender: bytes of it actually sent (less than `bytes` when resumed or up to date). */
  sentBytes?: number;
  /** Sender: the receiver held part of it from an interrupted earlier transfer. */
  resumed?: boolean;
}

export interface TransferResult extends TransferInfo {
  seconds: number;
  bytesPerSecond: number;
  /** Every file, stream and folder of the transfer, in offer order. */
  entries: EntryResult[];
  committed: number;
  upToDate: number;
  failed: number;
  /** Sender: file bytes actually sent (resumed and up-to-date data not counted). */
  sentBytes?: number;
  /** The first failed entry's error, when any failed (the exit status follows it). */
  firstFailure?: { code: ErrorCode; message: string; name: string };
  /** Single-file transfers: the digest and (receiver) where it landed, as in the `done` event of one file. */
  digest?: string;
  path?: string;
  /** What the transport did: bytes on the wire; for UDP also packets, retransmissions, loss and RTT. */
  stats?: TransportStats;
}

export interface TransferObserver {
  /** The receiver answered the offer; data starts to flow. */
  start?(info: TransferInfo): void;
  /** `done` bytes of the transfer have been sent (sender) or written (receiver). Called often: throttle before printing. */
  progress?(info: TransferInfo, done: number): void;
  /** One entry (file, stream or folder) is finished, one way or the other. */
  entry?(info: TransferInfo, entry: EntryResult): void;
}

/** How a transfer is named in one line: its one entry, or the first and how many more top-level ones. */
export function transferName(names: string[]): string {
  const top = [...new Set(names.map((n) => n.split('/')[0]!))];
  if (top.length === 0) return '(nothing)';
  return top.length === 1 ? top[0]! : `${top[0]} (+${top.length - 1} more)`;
}
