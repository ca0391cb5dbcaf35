/**
 * What the transfer layer sees of a connection: frames in, frames out, backpressure both ways.
 * TCP and UDP both implement it; the transfer code cannot tell them apart.
 */
import type { Frame, SessionKeys } from '../protocol/index.js';
import type { SockxferError } from '../errors.js';

export type TransportKind = 'tcp' | 'udp';

/**
 * What a transport can say about its work, for the summary and the `done` event. TCP knows
 * bytes only (the kernel hides the rest); UDP counts what its own reliability layer did.
 */
export interface TransportStats {
  /** Bytes handed to the network and received from it, headers of our own protocol included. */
  bytesSent: number;
  bytesReceived: number;
  packetsSent?: number;
  packetsReceived?: number;
  /** Packets that carried a payload sent before. */
  retransmitted?: number;
  retransmittedBytes?: number;
  /** Packets declared lost (RFC 9002 thresholds). */
  lost?: number;
  /** Packets declared lost that were acknowledged after all (their retransmission was not needed). */
  spurious?: number;
  /** Payloads that arrived more than once and were dropped. */
  duplicates?: number;
  /** Datagrams dropped because they failed their CRC32C or were malformed. */
  corrupt?: number;
  /** Datagrams dropped because they did not authenticate (with a key: forged, or sealed with another key). */
  unauthenticated?: number;
  /** Probe timeouts that fired. */
  probes?: number;
  srttMs?: number | null;
  minRttMs?: number | null;
  /** The sending rate at the end, bytes per second. */
  rateBytesPerSecond?: number;
  congestionControl?: string;
  /**
   * UDP: how datagrams reached the kernel. Sending: 'gso' (batches, runs of equal size as one
   * UDP GSO message), 'sendmmsg' (batches) or 'dgram' (one system call each); receiving:
   * 'recvmmsg' (batches) or 'dgram'.
   */
  io?: string;
}

export interface Transport {
  readonly kind: TransportKind;
  /** The peer as "host:port" ("[v6]:port" for IPv6), for messages and logs. */
  readonly remote: string;
  /** The largest chunk a DATA frame may carry on this transport. */
  readonly maxChunkSize: number;
  /** The session id frames are sent with (the sender picks it; a receiver learns it from the first frame). */
  session: bigint;

  /**
   * Queues a frame for sending. Returns false when the send queue is over its high-water mark:
   * the caller should await `drain()` before sending more. Never drops a frame.
   * `onReleased` runs once the transport holds no reference to the frame's buffers any more
   * (handed to the kernel, or the connection is gone), so the caller may reuse them.
   */
  send(frame: Frame, onReleased?: () => void): boolean;
  /** Resolves when the send queue is below its low-water mark; rejects if the connection fails. */
  drain(): Promise<void>;
  /**
   * The next frame from the peer. Rejects with a SockxferError when the connection fails, the
   * peer breaks the protocol, or the idle timeout passes. Reading pauses by itself while
   * received frames wait here unclaimed, so a slow consumer slows the peer down.
   */
  receive(): Promise<Frame>;
  /**
   * The next frame if one is already waiting, without a promise; undefined otherwise (then
   * await receive()). A consumer of many small frames drains what arrived in one go this way.
   */
  tryReceive(): Frame | undefined;
  /** Fails the connection with E_TIMEOUT after `ms` without any progress in either direction (0 turns it off). */
  setIdleTimeout(ms: number): void;
  /** Flushes what is queued, then closes. */
  close(): Promise<void>;
  /**
   * Ends the session because of `error`: pending and future receive()/drain() calls reject
   * with it, the peer is told (an ERROR frame) where the connection still allows, then it closes.
   */
  abort(error: SockxferError): Promise<void>;
  /** Closes at once, telling the peer nothing; pending and future calls reject with `error`. */
  destroy(error?: Error): void;
  /**
   * The session's keys are known (key handshake, see protocol/secure.ts). On UDP, packets the
   * peer protects with them are accepted from now on, beside clear ones; TCP keeps them for
   * startSealing().
   */
  useKeys(keys: SessionKeys): void;
  /**
   * From now on every frame sent is sealed, and every frame received must be: a clear or forged
   * one fails the connection (TCP) or is dropped (UDP). Refused (E_PROTOCOL) when the peer has
   * already sent frames past this point in the clear: those would otherwise pass as authenticated.
   */
  startSealing(): void;
  /** True once startSealing() was called. */
  readonly sealed: boolean;
  /** Counters so far (also after the connection ended). */
  stats(): TransportStats;
}
