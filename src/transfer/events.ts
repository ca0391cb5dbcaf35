/** What the transfer layer tells its caller; the command layer turns these into bars, lines and JSON. */
import type { HashAlgorithm } from '../protocol/index.js';
import type { TransportKind, TransportStats } from '../transport/index.js';

export interface TransferInfo {
  /** The session id in hex; tells concurrent transfers apart in a receiver's events. */
  session: string;
  name: string;
  bytes: number;
  hash: HashAlgorithm;
  transport: TransportKind;
  /** The other side, "host:port". */
  peer: string;
}

export interface TransferResult extends TransferInfo {
  /** Whole-file digest in hex, as both sides computed it. */
  digest: string;
  seconds: number;
  bytesPerSecond: number;
  /** Receiver only: where the file was committed. */
  path?: string;
  /** What the transport did: bytes on the wire; for UDP also packets, retransmissions, loss and RTT. */
  stats?: TransportStats;
}

export interface TransferObserver {
  /** The receiver accepted the offer; data starts to flow. */
  start?(info: TransferInfo): void;
  /** `done` bytes of the file have been sent (sender) or written (receiver). Called per chunk: throttle before printing. */
  progress?(info: TransferInfo, done: number): void;
}
