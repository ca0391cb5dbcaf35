/**
 * The TCP transport: frames on a byte stream. The kernel orders, acknowledges, retransmits
 * and paces; this file only frames, and keeps backpressure honest in both directions.
 */
import net from 'node:net';
import {
  DATA_FIELDS_SIZE,
  HEADER_SIZE,
  MAX_CHUNK_SIZE,
  RecordOpener,
  RecordSealer,
  StreamDeframer,
  TAG_SIZE,
  TRAILER_SIZE,
  encodeFrame,
  fitMessage,
  type Frame,
  type SessionKeys,
} from '../protocol/index.js';
import { SockxferError, errnoToCode, toSockxferError } from '../errors.js';
import { formatHostPort, type HostPort } from './address.js';
import { foreignSession } from './session.js';
import type { Transport, TransportStats } from './transport.js';

/** Bytes handed to the socket but not yet to the kernel before send() says "wait". */
const SEND_HIGH_WATER = 8 * 1024 * 1024;
const SEND_LOW_WATER = 4 * 1024 * 1024;
/** Bytes of received frames the consumer has not claimed before reading pauses. */
const RECEIVE_HIGH_WATER = 4 * 1024 * 1024;
const RECEIVE_LOW_WATER = 2 * 1024 * 1024;
/** How long close() waits for the peer's FIN before tearing the socket down. */
const CLOSE_GRACE_MS = 5000;
/** The same after abort(): the peer may have stopped reading, so do not wait long for it. */
const ABORT_GRACE_MS = 1000;
/**
 * Connections the kernel holds completed but not yet accepted (Linux caps it at
 * net.core.somaxconn). Node's default, 511, overflows under a burst of connects faster than we
 * accept: the kernel then drops SYNs, honest ones too, which come back a second later. Measured
 * here: 10,000 connects against the receiver took 12 s with 511 (470 overflows), 1.9 s with 4096.
 */
const LISTEN_BACKLOG = 4096;

/** The largest encrypted record: one frame of the largest kind, and the tag. */
const MAX_RECORD = HEADER_SIZE + DATA_FIELDS_SIZE + MAX_CHUNK_SIZE + TRAILER_SIZE + TAG_SIZE;

/** "::ffff:1.2.3.4" (an IPv4 peer on a dual-stack socket) prints as 1.2.3.4. */
function plainAddress(address: string | undefined): string {
  if (!address) return '?';
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

type Waiter<T> = { resolve: (v: T) => void; reject: (e: SockxferError) => void };

export class TcpTransport implements Transport {
  readonly kind = 'tcp' as const;
  readonly maxChunkSize = MAX_CHUNK_SIZE;
  readonly remote: string;
  session: bigint;

  private readonly deframer = new StreamDeframer();
  private readonly inbox: Array<{ frame: Frame; size: number }> = [];
  private inboxBytes = 0;
  private readonly receivers: Array<Waiter<Frame>> = [];
  private unflushed = 0;
  /** The socket is corked until the end of the current tick (see send()). */
  private corked = false;
  private readonly drainers: Array<Waiter<void>> = [];
  private failure: SockxferError | null = null;
  /** Until the first frame fixes it, a server-side transport takes any session id. */
  private sessionKnown: boolean;
  private keys: SessionKeys | null = null;
  /** Set by startSealing(): frames go out in encrypted records, and must come in so. */
  private sealer: RecordSealer | null = null;
  private opener: RecordOpener | null = null;

  constructor(
    private readonly socket: net.Socket,
    session?: bigint,
  ) {
    this.session = session ?? 0n;
    this.sessionKnown = session !== undefined;
    this.remote = formatHostPort(plainAddress(socket.remoteAddress), socket.remotePort ?? 0);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () =>
      this.fail(
        this.deframer.idle
          ? new SockxferError('E_CONNECTION_LOST', `${this.remote} closed the connection`)
          : new SockxferError('E_CONNECTION_LOST', `${this.remote} closed the connection in the middle of a frame`),
      ),
    );
    socket.on('error', (err) => this.fail(this.networkError(err)));
    socket.on('close', () => this.fail(new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} closed`)));
    socket.on('timeout', () => {
      const err = new SockxferError('E_TIMEOUT', `no progress from ${this.remote} for ${Math.round((socket.timeout ?? 0) / 1000)} s`);
      this.fail(err);
      socket.destroy();
    });
  }

  private networkError(err: Error): SockxferError {
    const e = toSockxferError(err, 'E_CONNECTION_LOST');
    return e.code === 'E_CONNECTION_LOST' ? new SockxferError(e.code, `connection to ${this.remote} lost: ${err.message}`, { cause: err }) : e;
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    if (this.opener === null) {
      this.deliverBytes(chunk);
      return;
    }
    let plain: Buffer[];
    try {
      plain = this.opener.push(chunk);
    } catch (err) {
      this.fail(err as SockxferError);
      return;
    }
    for (const p of plain) if (!this.failure) this.deliverBytes(p);
  }

  /** Frames the bytes of the (plaintext) stream and delivers them. */
  private deliverBytes(chunk: Buffer): void {
    let decoded;
    try {
      decoded = this.deframer.push(chunk);
    } catch (err) {
      this.fail(err as SockxferError);
      return;
    }
    // Frames that arrived whole before a malformed one are still delivered (a peer's ERROR, say);
    // the malformed one fails the connection after them.
    const broken = this.deframer.error;
    for (const { frame, session, size } of decoded) {
      if (!this.sessionKnown) {
        this.session = session;
        this.sessionKnown = true;
      }
      const foreign = foreignSession(frame, session, this.session);
      if (foreign) {
        this.fail(foreign);
        return;
      }
      const waiter = this.receivers.shift();
      if (waiter) {
        waiter.resolve(frame);
      } else {
        this.inbox.push({ frame, size });
        this.inboxBytes += size;
      }
    }
    if (broken) this.fail(broken);
    else if (this.inboxBytes > RECEIVE_HIGH_WATER) this.socket.pause();
  }

  /** Records the first failure, stops reading and fails whoever waits for a frame. */
  private fail(err: SockxferError): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.pause();
    for (const w of this.receivers.splice(0)) w.reject(err);
    this.rejectDrainers(err);
  }

  private rejectDrainers(err: SockxferError): void {
    for (const w of this.drainers.splice(0)) w.reject(err);
  }

  send(frame: Frame, onReleased?: () => void): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) {
      throw this.failure ?? new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} is closed`);
    }
    const frameParts = encodeFrame(frame, this.session);
    const parts = this.sealer ? this.sealer.seal(frameParts) : frameParts;
    let bytes = 0;
    for (const p of parts) bytes += p.length;
    this.unflushed += bytes;
    const onFlushed = () => {
      onReleased?.();
      this.unflushed -= bytes;
      if (this.unflushed <= SEND_LOW_WATER) for (const w of this.drainers.splice(0)) w.resolve();
    };
    // Frames sent in one tick go out in one writev (a receiver's verdicts on a thousand small
    // files, a sender's DATA and END for each): the socket is corked until the tick ends. The
    // callback of a frame's last part marks it flushed.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    for (let i = 0; i < parts.length - 1; i++) this.socket.write(parts[i]!);
    this.socket.write(parts[parts.length - 1]!, onFlushed);
    return this.unflushed < SEND_HIGH_WATER;
  }

  drain(): Promise<void> {
    if (this.unflushed <= SEND_LOW_WATER) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (this.socket.destroyed) return Promise.reject(new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} is closed`));
    return new Promise((resolve, reject) => this.drainers.push({ resolve, reject }));
  }

  tryReceive(): Frame | undefined {
    const next = this.inbox.shift();
    if (!next) return undefined;
    this.inboxBytes -= next.size;
    if (this.inboxBytes <= RECEIVE_LOW_WATER && !this.failure && this.socket.isPaused()) this.socket.resume();
    return next.frame;
  }

  receive(): Promise<Frame> {
    const next = this.inbox.shift();
    if (next) {
      this.inboxBytes -= next.size;
      if (this.inboxBytes <= RECEIVE_LOW_WATER && !this.failure && this.socket.isPaused()) this.socket.resume();
      return Promise.resolve(next.frame);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.receivers.push({ resolve, reject }));
  }

  setIdleTimeout(ms: number): void {
    this.socket.setTimeout(ms);
  }

  close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    const socket = this.socket;
    if (socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => socket.destroy(), graceMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      // Keep reading (and discarding) so the peer's FIN is seen.
      this.inbox.length = 0;
      this.inboxBytes = 0;
      socket.resume();
      socket.end();
    });
  }

  async abort(error: SockxferError): Promise<void> {
    this.fail(error);
    if (!this.socket.destroyed && !this.socket.writableEnded) {
      try {
        this.send({ type: 'error', code: error.wireCode, message: fitMessage(error.message) });
      } catch {
        // the connection is already gone: nobody to tell
      }
    }
    await this.close(ABORT_GRACE_MS);
  }

  useKeys(keys: SessionKeys): void {
    this.keys = keys;
  }

  get sealed(): boolean {
    return this.sealer !== null;
  }

  startSealing(): void {
    if (this.keys === null) throw new Error('startSealing() before useKeys()');
    if (this.sealer !== null) return;
    // Clear bytes the peer sent past the last handshake frame would be read as authenticated.
    if (this.inbox.length > 0 || !this.deframer.idle) {
      const err = new SockxferError('E_PROTOCOL', `${this.remote} sent clear frames after the key handshake`);
      this.fail(err);
      throw err;
    }
    this.sealer = new RecordSealer(this.keys.send);
    this.opener = new RecordOpener(this.keys.receive, MAX_RECORD);
  }

  stats(): TransportStats {
    return { bytesSent: this.socket.bytesWritten, bytesReceived: this.socket.bytesRead };
  }

  destroy(error?: Error): void {
    const err = error ? toSockxferError(error, 'E_CONNECTION_LOST') : new SockxferError('E_CONNECTION_LOST', `connection to ${this.remote} closed`);
    this.fail(err);
    this.socket.destroy();
  }
}

/** Connects to `target`; fails with E_TIMEOUT after `timeoutMs`, or with the network's own reason. */
export function connectTcp(target: HostPort, options: { timeoutMs: number; session: bigint }): Promise<TcpTransport> {
  const where = formatHostPort(target.host, target.port);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new SockxferError('E_TIMEOUT', `could not connect to ${where} within ${options.timeoutMs / 1000} s`));
    }, options.timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new TcpTransport(socket, options.session));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const code = (err.code ? errnoToCode(err.code) : undefined) ?? 'E_UNREACHABLE';
      const reason =
        err.code === 'ECONNREFUSED'
          ? 'connection refused (is sockxfer receive running there?)'
          : err.code === 'ENOTFOUND'
            ? `no such host "${target.host}"`
            : err.message;
      reject(new SockxferError(code, `cannot connect to ${where}: ${reason}`, { cause: err }));
    });
  });
}

export interface TcpListener {
  readonly host: string;
  readonly port: number;
  /** Stops accepting; open connections are left to their owners. */
  close(): Promise<void>;
}

/**
 * Listens for senders. Without a host it listens on all interfaces, IPv6 and IPv4 on one
 * dual-stack socket, or IPv4 only where the machine has no IPv6.
 */
export async function listenTcp(
  where: { host?: string; port: number },
  onConnection: (transport: TcpTransport) => void,
): Promise<TcpListener> {
  const server = net.createServer({ noDelay: true }, (socket) => onConnection(new TcpTransport(socket)));
  const listenOn = (host: string) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen({ host, port: where.port, ipv6Only: false, backlog: LISTEN_BACKLOG }, () => {
        server.removeListener('error', onError);
        resolve();
      });
    });
  try {
    if (where.host !== undefined) {
      await listenOn(where.host);
    } else {
      try {
        await listenOn('::');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT' && (err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL') throw err;
        await listenOn('0.0.0.0');
      }
    }
  } catch (err) {
    const e = toSockxferError(err, 'E_LISTEN');
    throw new SockxferError(e.code === 'E_UNREACHABLE' ? 'E_LISTEN' : e.code, `cannot listen on ${formatHostPort(where.host ?? '::', where.port)}: ${(err as Error).message}`, { cause: err });
  }
  // Keep serving if a later accept fails (EMFILE and the like); the error is the connection's, not ours.
  server.on('error', () => {});
  const address = server.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
