/**
 * One UDP connection: the Transport the transfer layer sees, built from the pure pieces beside
 * it. This file owns the timers; the socket belongs to endpoint.ts, which hands packets in
 * (`onPacket`) and takes datagrams out (the `output` callback).
 *
 * What travels:
 * - control frames (HELLO, OFFER, END, VERDICT, ERROR, …) as an ordered byte stream cut into
 *   STREAM packets, reassembled by offset and read by the same deframer as TCP;
 * - each DATA frame as one DATA packet with a sequence number, delivered in any order, once.
 * Both are acknowledged by packet number; a lost packet's payload goes out again in a new
 * packet. Sending is limited by the congestion window, the pacer, and the receiver's
 * flow-control window (ACKs carry how many payload bytes the peer may have sent in all).
 */
import { SockxferError } from '../../errors.js';
import { StreamDeframer, dataLength, encodeFrameToBuffer, fitMessage, type DataFrame, type Frame, type SessionKeys } from '../../protocol/index.js';
import { foreignSession } from '../session.js';
import type { Transport, TransportStats } from '../transport.js';
import { AckTracker, MAX_ACK_DELAY_MS } from './ack-tracker.js';
import { DeliveryRateController, NewRenoController, Pacer, RateSampler, type CongestionController } from './congestion.js';
import {
  DATA_PACKET_OVERHEAD,
  STREAM_PACKET_OVERHEAD,
  PROTECTION_OVERHEAD,
  DataPacketEncoder,
  encodePacket,
  openPacket,
  protectPacket,
  type Packet,
} from './packet.js';
import { LossRecovery, newSentPacket, type SentPacket } from './recovery.js';
import { SeqSet } from './seq-set.js';

/** A DATA frame's release: hands `datagram` back once, however often it is called. */
function lease(recycle: (datagram: Buffer) => void, datagram: Buffer): () => void {
  let lent = true;
  return () => {
    if (lent) {
      lent = false;
      recycle(datagram);
    }
  };
}

/** Flow-control window each side grants: payload bytes received but not yet taken by the transfer layer. */
export const DEFAULT_WINDOW = 16 * 1024 * 1024;
/** Unacknowledged bytes (queued and in flight) before send() says "wait"; at least twice the congestion window. */
const SEND_HIGH_WATER = 8 * 1024 * 1024;
const CLOSE_GRACE_MS = 5000;
const ABORT_GRACE_MS = 1000;
/**
 * How far ahead of what arrived in order a DATA sequence number or a control-stream offset may
 * be and still be held: well beyond what the flow-control window lets an honest sender reach
 * (16 MiB in chunks of at least 528 bytes; control frames are a few KiB), so that a peer cannot
 * make us remember an unbounded set.
 */
const MAX_SEQ_AHEAD = 1 << 16;
const MAX_CONTROL_AHEAD = 1024 * 1024;
/** Copies of the final CLOSE. */
const CLOSE_COPIES = 3;
/** Probes sent when the probe timeout fires (RFC 9002 §6.2.4). */
const PROBES = 2;

export type CongestionName = 'rate' | 'reno';

export interface ConnectionOptions {
  session: bigint;
  /** "host:port" of the peer. */
  remote: string;
  /** Largest datagram this side sends (UDP payload bytes). */
  datagramSize: number;
  /** Largest datagram the peer sends (bounds the DATA chunks it may offer). */
  peerDatagramSize: number;
  /** The peer's initial flow-control window. */
  peerWindow: number;
  cc: CongestionName;
  /** Cap on the sending rate in bytes per second (0: none). */
  rateLimit: number;
  /** Sends one datagram. */
  output: (packet: Buffer) => void;
  /** True when the socket holds no datagram not yet passed to the kernel (so send buffers may be reused). */
  sendQueueEmpty?: () => boolean;
  /** Takes back a datagram buffer lent to onPacket (batch.ts), once its payload is not needed. */
  recycle?: (datagram: Buffer) => void;
  /** How datagrams move between this connection and the kernel (batch.ts), for its statistics. */
  io?: () => string;
  /** Called once when the connection is finished, so the endpoint can forget it (and close its socket: close() and abort() wait for that). */
  onFinished?: () => Promise<void> | void;
  /** An RTT measured during the handshake (ms). */
  handshakeRtt?: number;
  /** This side holds a key: packets will be protected, so chunks leave room for the tag. */
  keyed?: boolean;
  clock?: () => number;
}

/** Something that travels reliably: a DATA frame, or a piece of the control stream. */
interface Message {
  kind: 'data' | 'stream';
  /** Data: sequence number; stream: byte offset. */
  seq: number;
  index: number;
  chunk: number;
  bytes: Buffer;
  /** Payload bytes, counted against flow control and the send buffer. */
  size: number;
  onReleased: (() => void) | undefined;
  acked: boolean;
  /** Waiting in the retransmission queue. */
  queued: boolean;
  /** Packets carrying it that are still in flight. */
  copies: number;
  sends: number;
}

type Payload = Message | null; // null: a PING

type Waiter<T> = { resolve: (v: T) => void; reject: (e: SockxferError) => void };

/** A FIFO with O(1) shift. */
class Queue<T> {
  private items: T[] = [];
  private head = 0;

  push(v: T): void {
    this.items.push(v);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    const v = this.items[this.head];
    if (v === undefined) return undefined;
    this.items[this.head++] = undefined as T;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }

  get length(): number {
    return this.items.length - this.head;
  }

  drain(): T[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

export class UdpConnection implements Transport {
  readonly kind = 'udp' as const;
  readonly remote: string;
  readonly maxChunkSize: number;
  session: bigint;

  private readonly clock: () => number;
  private readonly output: (packet: Buffer) => void;
  private readonly io: () => string;
  private readonly recycle: ((datagram: Buffer) => void) | null;
  private readonly datagramSize: number;
  private readonly recovery = new LossRecovery<Payload>();
  private readonly cc: CongestionController;
  private readonly sampler = new RateSampler();
  private readonly pacer: Pacer;
  private readonly rateLimit: number;
  private nextPn = 0;
  private readonly dataEncoder: DataPacketEncoder;
  /** Bytes a datagram gives to protection (the tag) when this side holds a key. */
  private readonly overhead: number;
  private keys: SessionKeys | null = null;
  /** startSealing() was called: packets go out protected, and clear ones from the peer are dropped. */
  private sealOut = false;

  // Sending.
  private readonly control = new Queue<Message>();
  private readonly data = new Queue<Message>();
  private readonly retransmit = new Queue<Message>();
  private streamOffset = 0;
  private dataSeq = 0;
  /** Payload bytes of messages not yet acknowledged (queued or in flight). */
  private unacked = 0;
  /** Payload bytes of first transmissions; flow control compares them with the peer's limit. */
  private sentNew = 0;
  private peerMaxData: number;
  private readonly drainers: Array<Waiter<void>> = [];
  private readonly flushers: Array<() => void> = [];

  // Receiving.
  private readonly acks = new AckTracker();
  private readonly dataSeen = new SeqSet();
  private readonly deframer = new StreamDeframer();
  private readonly segments = new Map<number, Buffer>();
  private streamDelivered = 0;
  /** Frames for the transfer layer, and their payload sizes (two queues: no wrapper object per datagram). */
  private readonly inbox = new Queue<Frame>();
  private readonly inboxSizes = new Queue<number>();
  private readonly receivers: Array<Waiter<Frame>> = [];
  /** Payload bytes handed to the transfer layer, and the limit last advertised to the peer. */
  private consumed = 0;
  private advertised = DEFAULT_WINDOW;
  private windowUpdate = false;

  // Timers and state.
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private wake: NodeJS.Immediate | null = null;
  private timerAt = Infinity;
  private idleMs = 30_000;
  private lastReceivedAt: number;
  private lastSentAt: number;
  private pacedUntil = -Infinity;
  private failure: SockxferError | null = null;
  private finished = false;
  private peerClosed = false;
  private readonly onFinished: (() => Promise<void> | void) | undefined;
  /** Settles once finish() has run and the endpoint let go of the socket. */
  private ended: Promise<void> = Promise.resolve();
  private aborting: Promise<void> | null = null;
  /** Resolves when the peer says CLOSE. */
  private peerGoneResolve: () => void = () => {};
  private readonly peerGone = new Promise<void>((resolve) => (this.peerGoneResolve = resolve));

  private readonly counters = {
    packetsSent: 0,
    packetsReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    retransmitted: 0,
    retransmittedBytes: 0,
    duplicates: 0,
    corrupt: 0,
    unauthenticated: 0,
    probes: 0,
  };

  constructor(options: ConnectionOptions) {
    this.session = options.session;
    this.remote = options.remote;
    this.output = options.output;
    this.io = options.io ?? (() => 'dgram');
    this.recycle = options.recycle ?? null;
    this.datagramSize = options.datagramSize;
    this.overhead = options.keyed ? PROTECTION_OVERHEAD : 0;
    this.maxChunkSize = Math.max(options.datagramSize, options.peerDatagramSize) - DATA_PACKET_OVERHEAD - this.overhead;
    this.peerMaxData = options.peerWindow;
    this.rateLimit = options.rateLimit;
    this.onFinished = options.onFinished;
    this.clock = options.clock ?? (() => performance.now());
    const mss = options.datagramSize;
    this.cc = options.cc === 'reno' ? new NewRenoController(mss) : new DeliveryRateController(mss);
    this.pacer = new Pacer(mss);
    this.dataEncoder = new DataPacketEncoder(options.session, options.sendQueueEmpty);
    const now = this.clock();
    this.lastReceivedAt = now;
    this.lastSentAt = now;
    if (options.handshakeRtt !== undefined) {
      this.recovery.rtt.update(options.handshakeRtt, 0, MAX_ACK_DELAY_MS);
      if (this.cc instanceof DeliveryRateController) this.cc.seedRtt(options.handshakeRtt, now);
    }
    this.updatePacing(now);
  }

  // ---- Transport ---------------------------------------------------------------------------

  send(frame: Frame, onReleased?: () => void): boolean {
    if (this.failure) throw this.failure;
    if (this.finished) throw new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} is closed`);
    if (frame.type === 'data') {
      const bytes = frame.data.length === 1 ? frame.data[0]! : Buffer.concat(frame.data, dataLength(frame));
      if (bytes.length > this.datagramSize - DATA_PACKET_OVERHEAD - this.overhead) {
        throw new RangeError(`a chunk of ${bytes.length} bytes does not fit a ${this.datagramSize}-byte datagram`);
      }
      this.data.push(this.message('data', this.dataSeq++, bytes, onReleased, frame.index, frame.chunk));
    } else {
      // Encoding copies everything the frame refers to: the caller's buffers are free at once.
      const encoded = encodeFrameToBuffer(frame, this.session);
      onReleased?.();
      const room = this.datagramSize - STREAM_PACKET_OVERHEAD - this.overhead;
      for (let off = 0; off < encoded.length; off += room) {
        const piece = encoded.subarray(off, off + room);
        this.control.push(this.message('stream', this.streamOffset, piece, undefined));
        this.streamOffset += piece.length;
      }
    }
    this.scheduleService();
    return this.unacked < this.highWater;
  }

  /**
   * Runs service() once the caller's synchronous work is done: a sender queueing thousands of
   * chunks in one go must not hold ACKs unprocessed (that would inflate every RTT sample).
   */
  private scheduleService(): void {
    if (this.immediate !== null || this.finished) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.service();
    });
  }

  private message(kind: Message['kind'], seq: number, bytes: Buffer, onReleased: (() => void) | undefined, index = 0, chunk = 0): Message {
    const size = bytes.length;
    this.unacked += size;
    return { kind, seq, index, chunk, bytes, size, onReleased, acked: false, queued: false, copies: 0, sends: 0 };
  }

  private get highWater(): number {
    return Math.max(SEND_HIGH_WATER, 2 * this.cc.window);
  }

  drain(): Promise<void> {
    if (this.unacked <= this.highWater / 2) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.drainers.push({ resolve, reject }));
  }

  receive(): Promise<Frame> {
    const next = this.take();
    if (next) return Promise.resolve(next);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.receivers.push({ resolve, reject }));
  }

  setIdleTimeout(ms: number): void {
    this.idleMs = ms > 0 ? ms : Infinity;
    this.service();
  }

  /** Waits until everything sent is acknowledged (or the peer closed, or `graceMs` passed), then says CLOSE. */
  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    if (!this.finished) {
      if (!this.failure && !this.peerClosed) await this.flushed(graceMs);
      this.finish(0, 'done');
    }
    await this.ended;
  }

  /** A second call (the transfer layer's, after a signal's) waits for the first instead of cutting its ERROR short. */
  abort(error: SockxferError): Promise<void> {
    this.aborting ??= this.abortOnce(error);
    return this.aborting;
  }

  private async abortOnce(error: SockxferError): Promise<void> {
    const alreadyFailed = this.failure !== null;
    this.fail(error);
    if (this.finished) return this.ended;
    if (!alreadyFailed && !this.peerClosed) {
      // Data not yet sent (or to be sent again) will never be wanted.
      for (const m of [...this.data.drain(), ...this.retransmit.drain()]) {
        m.queued = false;
        if (!m.acked) {
          m.acked = true;
          this.release(m);
        }
      }
      // The ERROR goes out at once, past the congestion window and the pacer (it is one small
      // packet, and the peer must learn why we stop), and is resent like any control frame until
      // acknowledged, for up to ABORT_GRACE_MS.
      const encoded = encodeFrameToBuffer({ type: 'error', code: error.wireCode, message: fitMessage(error.message) }, this.session);
      let told: () => void = () => {};
      const acknowledged = new Promise<void>((resolve) => (told = resolve));
      const m = this.message('stream', this.streamOffset, encoded, () => told());
      this.streamOffset += encoded.length;
      this.sendMessage(m, this.clock());
      this.service();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([acknowledged, new Promise<void>((resolve) => (timer = setTimeout(resolve, ABORT_GRACE_MS))), this.peerGone]);
      clearTimeout(timer);
    }
    this.finish(error.wireCode, error.message);
    await this.ended;
  }

  destroy(error?: Error): void {
    this.fail(error instanceof SockxferError ? error : new SockxferError('E_CONNECTION_LOST', error?.message ?? `connection to ${this.remote} closed`));
    this.finish(null, '');
  }

  stats(): TransportStats {
    const rtt = this.recovery.rtt;
    return {
      bytesSent: this.counters.bytesSent,
      bytesReceived: this.counters.bytesReceived,
      packetsSent: this.counters.packetsSent,
      packetsReceived: this.counters.packetsReceived,
      retransmitted: this.counters.retransmitted,
      retransmittedBytes: this.counters.retransmittedBytes,
      lost: this.recovery.declaredLost,
      spurious: this.recovery.spurious,
      duplicates: this.counters.duplicates,
      corrupt: this.counters.corrupt,
      unauthenticated: this.counters.unauthenticated,
      probes: this.counters.probes,
      srttMs: rtt.hasSample ? rtt.smoothed : null,
      minRttMs: Number.isFinite(rtt.min) ? rtt.min : null,
      rateBytesPerSecond: Math.round(this.currentRate() * 1000),
      congestionControl: this.cc.name,
      io: this.io(),
    };
  }

  // ---- From the endpoint -------------------------------------------------------------------

  /** A datagram that failed its checks but came from this peer: counted, otherwise ignored. */
  onCorrupt(): void {
    this.counters.corrupt++;
  }

  /** A network error for this peer (ICMP port unreachable on a connected socket). */
  onNetworkError(error: SockxferError): void {
    this.fail(error);
    this.finish(null, '');
  }

  useKeys(keys: SessionKeys): void {
    this.keys = keys;
  }

  get sealed(): boolean {
    return this.sealOut;
  }

  startSealing(): void {
    if (this.keys === null) throw new Error('startSealing() before useKeys()');
    if (this.sealOut) return;
    // Clear control bytes the peer sent past the last handshake frame would pass as authenticated.
    if (this.inbox.length > 0 || !this.deframer.idle || this.segments.size > 0) {
      const err = new SockxferError('E_PROTOCOL', `${this.remote} sent clear frames after the key handshake`);
      this.fail(err);
      this.finish(err.wireCode, err.message);
      throw err;
    }
    this.sealOut = true;
  }

  /**
   * A datagram the endpoint found protected (CRC, magic and type checked): opened with the
   * session's keys and handled as a packet, or dropped and counted when it does not authenticate.
   */
  onProtected(datagram: Buffer): void {
    if (this.finished) return;
    const decoded = this.keys === null ? null : openPacket(datagram, this.keys.receive);
    if (decoded === null || !decoded.ok) {
      this.counters.unauthenticated++;
      return;
    }
    this.onPacket(decoded.packet, datagram.length, true);
  }

  /**
   * A decoded packet from the peer. `size` is the datagram's length; `authenticated`: it came
   * protected and opened with the session's keys. `lent`: the datagram's buffer, lent by the
   * endpoint's pool: a DATA frame carries it back (release) once the transfer is done with it.
   */
  onPacket(packet: Packet, size: number, authenticated = false, lent?: Buffer): void {
    if (this.finished) return;
    // Once sealed, a clear packet (but the handshake's, which the endpoint answers) is nobody's word.
    // (Not counted: the peer's own clear ACKs from before it sealed arrive here too.)
    if (this.sealOut && !authenticated && packet.body.type !== 'initial' && packet.body.type !== 'retry' && packet.body.type !== 'ready') return;
    const now = this.clock();
    this.lastReceivedAt = now;
    this.counters.packetsReceived++;
    this.counters.bytesReceived += size;
    const body = packet.body;
    // Payload further ahead than we hold is dropped *unacknowledged*, so the peer sends it again
    // later; acknowledging it would lose it for good.
    if ((body.type === 'data' && body.seq >= this.dataSeen.contiguous + MAX_SEQ_AHEAD) || (body.type === 'stream' && body.offset + body.bytes.length - this.streamDelivered > MAX_CONTROL_AHEAD)) {
      return;
    }
    const ackEliciting = body.type === 'data' || body.type === 'stream' || body.type === 'ping';
    if (ackEliciting || body.type === 'ack') {
      const fresh = this.acks.onPacket(packet.pn, ackEliciting, now);
      // An authenticated packet whose number came before is a replay (or the network's duplicate):
      // acknowledged, never acted on twice.
      if (!fresh && authenticated) {
        this.counters.duplicates++;
        this.scheduleService();
        return;
      }
    }
    switch (body.type) {
      case 'data':
        if (!this.dataSeen.add(body.seq)) {
          this.counters.duplicates++;
          if (lent !== undefined) this.recycle?.(lent);
        } else if (!this.failure) {
          // One shape for every DATA frame, lent or not (a second one deoptimizes the receiver's hot path).
          const release = lent !== undefined && this.recycle !== null ? lease(this.recycle, lent) : undefined;
          const frame: DataFrame = { type: 'data', index: body.index, chunk: body.chunk, data: [body.bytes], release };
          this.deliver(frame, body.bytes.length);
        }
        break;
      case 'stream':
        this.onStream(body.offset, body.bytes);
        break;
      case 'ack':
        this.onAck(body, now);
        break;
      case 'close':
        this.onClose(body.code, body.message);
        return;
      default:
        // INITIAL, RETRY, READY and PING need nothing more here (the endpoint handles the handshake).
        break;
    }
    // Once per turn of the event loop, after every datagram that arrived in it: one ACK for the
    // lot, one pass of sending, one timer update.
    this.scheduleService();
  }

  // ---- Receiving ---------------------------------------------------------------------------

  /**
   * Queues a frame for the transfer layer. A waiting receive() is woken once per turn of the event
   * loop rather than per datagram: it then takes the rest of what arrived with tryReceive(), so
   * the 32 datagrams a turn can bring cost one promise, not 32.
   */
  private deliver(frame: Frame, size: number): void {
    this.inbox.push(frame);
    this.inboxSizes.push(size);
    if (this.receivers.length > 0 && this.wake === null) {
      this.wake = setImmediate(() => {
        this.wake = null;
        for (let w = this.receivers.shift(); w !== undefined; w = this.receivers.shift()) {
          const next = this.take();
          if (next === undefined) {
            this.receivers.unshift(w);
            break;
          }
          w.resolve(next);
        }
      });
    }
  }

  tryReceive(): Frame | undefined {
    return this.take();
  }

  /** The oldest queued frame, counted as taken by the transfer layer. */
  private take(): Frame | undefined {
    const frame = this.inbox.shift();
    if (frame !== undefined) this.consume(this.inboxSizes.shift()!);
    return frame;
  }

  /** The transfer layer took `size` payload bytes: the window moves; tell the peer when it moved a lot. */
  private consume(size: number): void {
    this.consumed += size;
    if (this.consumed + DEFAULT_WINDOW - this.advertised >= DEFAULT_WINDOW / 4) {
      this.windowUpdate = true;
      this.scheduleService();
    }
  }

  private onStream(offset: number, bytes: Buffer): void {
    const end = offset + bytes.length;
    if (end <= this.streamDelivered) {
      this.counters.duplicates++;
      return;
    }
    if (offset > this.streamDelivered) {
      // Early: hold it (onPacket bounds how early), unless already held.
      if (this.segments.has(offset)) this.counters.duplicates++;
      else this.segments.set(offset, bytes);
      return;
    }
    // Segments are cut once and resent as they were, so `offset` is exactly streamDelivered here.
    let piece: Buffer | undefined = offset === this.streamDelivered ? bytes : bytes.subarray(this.streamDelivered - offset);
    while (piece !== undefined) {
      this.streamDelivered += piece.length;
      this.pushStream(piece);
      piece = this.segments.get(this.streamDelivered);
      if (piece !== undefined) this.segments.delete(this.streamDelivered);
    }
  }

  private pushStream(bytes: Buffer): void {
    if (this.failure) return;
    let decoded;
    try {
      decoded = this.deframer.push(bytes);
    } catch (err) {
      this.fail(err as SockxferError);
      return;
    }
    for (const { frame, session, size } of decoded) {
      const foreign = foreignSession(frame, session, this.session);
      if (foreign) {
        this.fail(foreign);
        return;
      }
      this.deliver(frame, size);
    }
    const broken = this.deframer.error;
    if (broken) this.fail(broken);
  }

  private onClose(code: number, message: string): void {
    this.peerClosed = true;
    this.peerGoneResolve();
    if (code !== 0 && !this.failure) {
      // The peer gave up with an error: hand it over as the ERROR frame it stands for.
      this.deliver({ type: 'error', code, message }, 0);
    }
    this.fail(new SockxferError('E_CONNECTION_LOST', `${this.remote} closed the connection`));
    for (const f of this.flushers.splice(0)) f();
  }

  // ---- Acknowledgements and loss -----------------------------------------------------------

  private onAck(body: Extract<Packet['body'], { type: 'ack' }>, now: number): void {
    if (body.maxData > this.peerMaxData) this.peerMaxData = body.maxData;
    if (body.largest >= this.nextPn) return; // acknowledges packets never sent: ignore the lie
    const result = this.recovery.onAck(body, now);
    for (const p of result.acked) this.onDelivered(p);
    for (const p of result.spurious) this.onDelivered(p, true);
    const sample = this.sampler.onAck(result.acked, now, this.recovery.rtt.min);
    const rtt = this.recovery.rtt;
    this.cc.onAck(result.acked, sample, now, { smoothed: rtt.smoothed, min: rtt.min }, this.recovery.bytesInFlight);
    this.onLost(result.lost, now);
    this.updatePacing(now);
    this.checkDrained();
  }

  private onDelivered(p: SentPacket<Payload>, spurious = false): void {
    const m = p.payload;
    if (m === null) return;
    if (!spurious) m.copies--;
    if (!m.acked) {
      m.acked = true;
      this.release(m);
    }
  }

  private release(m: Message): void {
    this.unacked -= m.size;
    const cb = m.onReleased;
    m.onReleased = undefined;
    cb?.();
  }

  private onLost(lost: Array<SentPacket<Payload>>, now: number): void {
    if (lost.length === 0) return;
    this.cc.onLost(lost, now, this.recovery.bytesInFlight);
    for (const p of lost) {
      const m = p.payload;
      if (m === null) continue;
      m.copies--;
      // After a failure only control frames (the ERROR) are worth sending again.
      if (!m.acked && !m.queued && m.copies === 0 && !(this.failure && m.kind === 'data')) {
        m.queued = true;
        this.retransmit.push(m);
      }
    }
  }

  private checkDrained(): void {
    if (this.unacked <= this.highWater / 2) for (const w of this.drainers.splice(0)) w.resolve();
    if (this.unacked === 0) for (const f of this.flushers.splice(0)) f();
  }

  /** Resolves when every message is acknowledged, the peer closed, the connection failed, or `graceMs` passed. */
  private flushed(graceMs: number): Promise<void> {
    if (this.unacked === 0 || this.finished) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, graceMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.flushers.push(done);
    });
  }

  // ---- Sending -----------------------------------------------------------------------------

  private currentRate(): number {
    const cap = this.rateLimit > 0 ? this.rateLimit / 1000 : Infinity;
    return Math.min(this.cc.pacingRate, cap);
  }

  private updatePacing(now: number): void {
    this.pacer.setRate(this.currentRate(), now);
  }

  /** The next message to send: retransmissions first, then control, then data. */
  private nextMessage(): Message | undefined {
    for (;;) {
      const r = this.retransmit.peek();
      if (r === undefined) break;
      if (r.acked) {
        this.retransmit.shift();
        r.queued = false;
        continue;
      }
      return r;
    }
    return this.control.peek() ?? this.data.peek();
  }

  private takeMessage(m: Message): void {
    if (this.retransmit.peek() === m) {
      this.retransmit.shift();
      m.queued = false;
    } else if (this.control.peek() === m) {
      this.control.shift();
    } else {
      this.data.shift();
    }
  }

  /** Sends what the window, the pacer and flow control allow. */
  private flush(now: number): void {
    this.pacedUntil = -Infinity;
    for (;;) {
      const m = this.nextMessage();
      if (m === undefined) {
        if (this.recovery.bytesInFlight < this.cc.window) this.sampler.markAppLimited(this.recovery.bytesInFlight);
        return;
      }
      const size = (m.kind === 'data' ? DATA_PACKET_OVERHEAD : STREAM_PACKET_OVERHEAD) + m.bytes.length;
      if (this.recovery.bytesInFlight + size > this.cc.window) return;
      if (m.sends === 0 && this.sentNew + m.size > this.peerMaxData) return; // the peer's window is full
      if (!this.pacer.canSend(size, now)) {
        this.pacedUntil = this.pacer.nextSendTime(size, now);
        return;
      }
      this.takeMessage(m);
      this.sendMessage(m, now);
    }
  }

  private sendMessage(m: Message, now: number): void {
    const pn = this.nextPn++;
    const packet =
      m.kind === 'data'
        ? this.dataEncoder.encode(pn, m.seq, m.index, m.chunk, m.bytes)
        : encodePacket(this.session, pn, { type: 'stream', offset: m.seq, bytes: m.bytes });
    const size = packet.length;
    if (m.sends === 0) {
      this.sentNew += m.size;
    } else {
      this.counters.retransmitted++;
      this.counters.retransmittedBytes += m.size;
    }
    m.sends++;
    m.copies++;
    this.track(pn, size, m, now);
    this.transmit(packet, now);
  }

  private track(pn: number, size: number, payload: Payload, now: number): void {
    const p = newSentPacket(pn, now, size, payload);
    this.sampler.onSent(p, now, this.recovery.bytesInFlight);
    this.recovery.onSent(p);
    this.cc.onSent(size, now);
    this.pacer.onSent(size, now);
  }

  private transmit(clear: Buffer, now: number): void {
    const packet = this.sealOut ? protectPacket(clear, this.keys!.send) : clear;
    this.counters.packetsSent++;
    this.counters.bytesSent += packet.length;
    this.lastSentAt = now;
    try {
      this.output(packet);
    } catch {
      // The socket is closing; loss recovery or the idle timeout will tell.
    }
  }

  private sendAck(now: number): void {
    this.windowUpdate = false;
    this.advertised = this.consumed + DEFAULT_WINDOW;
    const body = this.acks.build(now, this.advertised);
    // Nothing received yet: an ACK needs a range, so a window update waits for the first packet.
    if (body === null) return;
    const pn = this.nextPn++;
    const buf = encodePacket(this.session, pn, { type: 'ack', ...body });
    this.recovery.onSentAckOnly(pn, now);
    this.transmit(buf, now);
  }

  private probe(now: number): void {
    this.counters.probes++;
    const oldest = this.recovery.oldestInFlight(PROBES);
    let sent = 0;
    for (const p of oldest) {
      const m = p.payload;
      if (m === null || m.acked) continue;
      this.sendMessage(m, now);
      sent++;
    }
    if (sent === 0) this.ping(now);
  }

  private ping(now: number): void {
    const pn = this.nextPn++;
    const buf = encodePacket(this.session, pn, { type: 'ping' });
    this.track(pn, buf.length, null, now);
    this.transmit(buf, now);
  }

  // ---- Timers --------------------------------------------------------------------------------

  /** Does whatever is due now (loss timers, sending, ACKs, the idle timeout) and re-arms the timer. */
  private service(): void {
    if (this.finished) return;
    const now = this.clock();
    if (now - this.lastReceivedAt > this.idleMs) {
      this.fail(new SockxferError('E_TIMEOUT', `no packets from ${this.remote} for ${Math.round(this.idleMs / 1000)} s`));
      this.finish(null, '');
      return;
    }
    if (this.recovery.timerDeadline() <= now) {
      const { lost, probe } = this.recovery.onTimer(now);
      this.onLost(lost, now);
      if (probe) this.probe(now);
      this.updatePacing(now);
    }
    if (!this.failure || this.control.length > 0 || this.retransmit.length > 0) this.flush(now);
    if (this.acks.due(now) || (this.windowUpdate && this.acks.largest >= 0)) this.sendAck(now);
    // Keep-alive: a quiet connection pings a few times per idle period, so a live peer is never idle.
    if (this.idleMs !== Infinity && now - this.lastSentAt > this.idleMs / 4 && this.recovery.inFlightCount === 0) this.ping(now);
    this.arm(now);
  }

  private arm(now: number): void {
    let at = Math.min(this.recovery.timerDeadline(), this.acks.deadline(), this.pacedUntil, this.lastReceivedAt + this.idleMs + 1);
    if (this.idleMs !== Infinity) at = Math.min(at, this.lastSentAt + this.idleMs / 4 + 1);
    if (at >= this.timerAt && this.timer !== null) return; // the armed timer fires first; it re-arms
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.service();
    }, Math.max(0, Math.ceil(at - now)));
  }

  // ---- Ending --------------------------------------------------------------------------------

  private fail(err: SockxferError): void {
    if (this.failure) return;
    this.failure = err;
    // Frames that arrived before the failure still go to whoever waits (a peer's ERROR, say).
    for (const w of this.receivers.splice(0)) {
      const next = this.take();
      if (next) w.resolve(next);
      else w.reject(err);
    }
    for (const w of this.drainers.splice(0)) w.reject(err);
  }

  /** Stops everything; `code` not null: tell the peer with a CLOSE first. */
  private finish(code: number | null, message: string): void {
    if (this.finished) return;
    if (code !== null && !this.peerClosed) {
      // Everything the peer sent is acknowledged first, so it need not resend anything.
      const now = this.clock();
      if (this.acks.largest >= 0) this.sendAck(now);
      // Nobody is left to resend a lost CLOSE (or answer the peer's retransmissions), so it goes
      // out CLOSE_COPIES times: a lost one would leave the peer waiting out its grace period.
      for (let i = 0; i < CLOSE_COPIES; i++) {
        this.transmit(encodePacket(this.session, this.nextPn++, { type: 'close', code, message: message.slice(0, 500) }), now);
      }
    }
    this.finished = true;
    this.fail(new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} closed`));
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    if (this.wake !== null) clearImmediate(this.wake);
    this.wake = null;
    for (const f of this.flushers.splice(0)) f();
    // Buffers the transfer layer lent us are free again, queued or in flight.
    const held = [...this.retransmit.drain(), ...this.control.drain(), ...this.data.drain(), ...this.recovery.inFlightPayloads()];
    for (const m of held) {
      if (m !== null && !m.acked) {
        m.acked = true;
        this.release(m);
      }
    }
    this.ended = Promise.resolve(this.onFinished?.());
  }
}
