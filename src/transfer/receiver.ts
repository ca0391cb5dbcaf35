/**
 * A receiver: listens, serves every sender that connects (one after another and at the same
 * time), and stops cleanly, removing the temporary files of transfers it cuts short.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { SockxferError, toSockxferError } from '../errors.js';
import { listenTcp, listenUdp, type Transport, type TransportKind } from '../transport/index.js';
import type { TransferInfo, TransferResult } from './events.js';
import { receiveSession, type ReceiveOptions, type SessionObserver } from './receive-session.js';
import { DirectorySyncer, FilesystemSyncer } from './target.js';
import { DEFAULT_PARTIAL_TTL_MS, cleanPartials } from './journal.js';
import { AuthThrottle } from './auth.js';

export interface ReceiverOptions extends Omit<ReceiveOptions, 'dir' | 'syncer' | 'resumeLocks' | 'sink' | 'fsSyncer' | 'partialUsers' | 'authThrottle'> {
  /** Write the one file of the one transfer here (needs `once`) instead of into the folder. */
  sink?: NodeJS.WritableStream;
  /** The target folder; created if missing. */
  dir: string;
  /** Listen address; all interfaces (IPv6 and IPv4) when undefined. */
  host?: string;
  port: number;
  /** Which transports to listen on (default both); they share the port number. */
  transports?: TransportKind[];
  /** Serve one transfer, then stop. Stray connections that never say HELLO do not count. */
  once: boolean;
  /** Transfers (connections past their HELLO) served at once; more are refused with E_BUSY (default DEFAULT_MAX_SESSIONS). */
  maxSessions?: number;
  /** Longest from a connection to its HELLO, however it trickles in; then it is cut off with E_TIMEOUT (default DEFAULT_HANDSHAKE_TIMEOUT_MS). */
  handshakeTimeoutMs?: number;
  /** Connections not yet past their HELLO held at once; a new one drops the oldest (default DEFAULT_MAX_PENDING). */
  maxPending?: number;
  /** Partial data (of interrupted transfers) untouched this long is removed (default a day). */
  partialTtlMs?: number;
}

export const DEFAULT_MAX_SESSIONS = 64;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Four times the sessions: room for a burst of honest senders between their connect and their
 * HELLO (one round trip), while a flood of idle connections costs a bounded set of sockets and
 * timers. Like a SYN-flood defence, a full set drops its oldest member, so a flood cannot keep a
 * prompt sender out: it would have to open this many connections within that sender's round trip.
 */
export const DEFAULT_MAX_PENDING = 256;
/**
 * Connections being ended (dropped, timed out, turned away) that may still wait for their peer:
 * a TCP close waits up to a second for the peer's FIN, a UDP abort up to a second for the ERROR's
 * acknowledgement. Past this many the oldest is cut at once, so that a flood cannot pile up
 * sockets (and entries in the UDP endpoint's table) at the rate it connects.
 */
export const MAX_CLOSING = 256;

export interface ListenAddress {
  host: string;
  port: number;
  transport: TransportKind;
}

export interface ReceiverObserver extends SessionObserver {
  /** A connection arrived (TCP accepted, UDP past its cookie), before its HELLO. */
  connection?(peer: string): void;
  done?(result: TransferResult): void;
  /** A session failed; `info` is there when it got as far as an accepted offer. */
  failed?(peer: string, info: TransferInfo | null, error: SockxferError): void;
}

interface Listener {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Attempts at finding a port free for both TCP and UDP when asked for any port (0). */
const SHARED_PORT_ATTEMPTS = 20;

export class Receiver {
  private listeners: Listener[] = [];
  /** Every connection not yet closed, whatever its state, and what settles when it is. */
  private readonly active = new Map<Transport, Promise<void>>();
  /** Connections that have not said HELLO yet, oldest first, with their handshake timers. */
  private readonly pending = new Map<Transport, NodeJS.Timeout>();
  /** Connections being ended by the receiver, oldest first (see MAX_CLOSING). */
  private readonly closing = new Set<Transport>();
  /** Why the receiver ended a connection, for a HELLO that was queued before it did. */
  private readonly endedWith = new WeakMap<Transport, SockxferError>();
  /** Connections past their HELLO: what maxSessions counts. */
  private sessions = 0;
  private stopping = false;
  private onceSettled: ((outcome: TransferResult | SockxferError) => void) | null = null;
  /** With `once`: the outcome of the first transfer. */
  readonly firstOutcome: Promise<TransferResult | SockxferError>;
  readonly dir: string;
  /** Folder fsyncs shared by all sessions. */
  private readonly syncer = new DirectorySyncer();
  /** Resume keys of files in progress, across sessions. */
  private readonly resumeLocks = new Set<string>();
  private cleaner: NodeJS.Timeout | null = null;
  private readonly fsSyncer: FilesystemSyncer;
  private readonly partialUsers = { count: 0 };
  /** Failed key handshakes per address, across sessions. */
  private readonly authThrottle = new AuthThrottle();

  constructor(
    private readonly options: ReceiverOptions,
    private readonly observer: ReceiverObserver = {},
  ) {
    this.dir = path.resolve(options.dir);
    this.fsSyncer = new FilesystemSyncer(this.dir);
    this.firstOutcome = new Promise((resolve) => (this.onceSettled = resolve));
  }

  /** Creates the target folder if needed and starts listening; returns where. */
  async start(): Promise<ListenAddress[]> {
    try {
      await fs.mkdir(this.dir, { recursive: true });
      await fs.access(this.dir, fs.constants.W_OK);
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      throw new SockxferError(e.code, `cannot use ${this.dir} as the target folder: ${(err as Error).message}`, { cause: err });
    }
    if (!(await fs.stat(this.dir)).isDirectory()) throw new SockxferError('E_USAGE', `${this.dir} is not a folder`);
    await this.fsSyncer.start();
    const addresses = await this.listen();
    // Partial data nobody came back for: at start, then every so often.
    const ttl = this.options.partialTtlMs ?? DEFAULT_PARTIAL_TTL_MS;
    await cleanPartials(this.dir, ttl, this.resumeLocks);
    this.cleaner = setInterval(() => void cleanPartials(this.dir, ttl, this.resumeLocks), Math.min(Math.max(ttl / 4, 1000), 3_600_000));
    this.cleaner.unref();
    return addresses;
  }

  /**
   * Listens on every transport asked for, all on one port number. With port 0 the first
   * transport picks a free port and the next takes the same number; should that be taken for
   * UDP, it tries again with another port.
   */
  private async listen(): Promise<ListenAddress[]> {
    const kinds = this.options.transports ?? ['tcp', 'udp'];
    for (let attempt = 0; ; attempt++) {
      const opened: Array<{ listener: Listener; transport: TransportKind }> = [];
      let port = this.options.port;
      try {
        for (const kind of kinds) {
          const where = { host: this.options.host, port };
          const listener = kind === 'tcp' ? await listenTcp(where, (t) => this.serve(t)) : await listenUdp({ ...where, keyed: Boolean(this.options.key) }, (t) => this.serve(t));
          opened.push({ listener, transport: kind });
          port = listener.port;
        }
      } catch (err) {
        await Promise.all(opened.map((o) => o.listener.close()));
        const retry = this.options.port === 0 && opened.length > 0 && attempt < SHARED_PORT_ATTEMPTS && (err as SockxferError).code === 'E_LISTEN';
        if (retry) continue;
        throw err;
      }
      this.listeners.push(...opened.map((o) => o.listener));
      return opened.map((o) => ({ host: o.listener.host, port: o.listener.port, transport: o.transport }));
    }
  }

  private serve(transport: Transport): void {
    if (this.stopping) {
      transport.destroy();
      return;
    }
    this.observer.connection?.(transport.remote);
    const maxSessions = this.options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    const busy = () => new SockxferError('E_BUSY', `this receiver serves ${maxSessions} transfers at once already; try again later`);
    if (this.sessions >= maxSessions) {
      // Told at once, before its HELLO: a sender that retries later gets in.
      const error = busy();
      this.observer.failed?.(transport.remote, null, error);
      this.track(transport, this.end(transport, error));
      return;
    }
    // Until its HELLO a connection costs a place among the pending ones, not a session: idle
    // connections cannot lock honest senders out. A full set drops its oldest.
    const maxPending = Math.max(1, this.options.maxPending ?? DEFAULT_MAX_PENDING);
    while (this.pending.size >= maxPending) {
      const [oldest, timer] = this.pending.entries().next().value as [Transport, NodeJS.Timeout];
      clearTimeout(timer);
      this.pending.delete(oldest);
      void this.end(oldest, new SockxferError('E_BUSY', `dropped before its HELLO: ${maxPending} connections were waiting for theirs and this was the oldest; try again later`));
    }
    const handshakeMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    // An absolute deadline: the idle timeout alone would let a sender that trickles its HELLO a
    // byte at a time hold the connection for ever.
    let deadline = performance.now() + handshakeMs;
    const arm = () => {
      const timer = setTimeout(() => {
        if (this.pending.get(transport) !== timer) return;
        this.pending.delete(transport);
        void this.end(transport, new SockxferError('E_TIMEOUT', `no HELLO from ${transport.remote} within the handshake timeout of ${handshakeMs / 1000} s`));
      }, Math.max(0, deadline - performance.now()));
      // Re-arming keeps the connection's place: the pending set stays in order of arrival.
      this.pending.set(transport, timer);
    };
    arm();

    let info: TransferInfo | null = null;
    let counts = false;
    let session = false;
    const observer: SessionObserver = {
      // The receiver holds its answer back this long (the key brake): its own wait, not the
      // sender's slowness, so the deadline moves by as much.
      brake: (ms) => {
        const timer = this.pending.get(transport);
        if (timer === undefined) return;
        clearTimeout(timer);
        deadline += ms;
        arm();
      },
      // The handshake is done when this fires (with a key: once the sender proved it holds it).
      hello: (peer) => {
        const timer = this.pending.get(transport);
        // Dropped or timed out already, with this HELLO still queued: it stays ended.
        if (timer === undefined) throw this.endedWith.get(transport) ?? new SockxferError('E_INTERNAL', `HELLO from ${transport.remote} on a connection no longer pending`);
        clearTimeout(timer);
        this.pending.delete(transport);
        if (this.sessions >= maxSessions) {
          this.closingNow(transport);
          throw busy();
        }
        if (this.options.once) {
          if (this.onceSettled === null) throw new SockxferError('E_REFUSED', 'this receiver serves one transfer and has one');
          counts = true;
          void this.closeListeners();
        }
        this.sessions++;
        session = true;
        this.observer.hello?.(peer);
      },
      start: (i) => {
        info = i;
        this.observer.start?.(i);
      },
      progress: (i, done) => this.observer.progress?.(i, done),
      entry: (i, e) => this.observer.entry?.(i, e),
    };
    const { policy, timeoutMs, maxSize, maxFiles, sink, key } = this.options;
    const shared = { syncer: this.syncer, resumeLocks: this.resumeLocks, fsSyncer: this.fsSyncer, partialUsers: this.partialUsers, authThrottle: this.authThrottle };
    const run = receiveSession(transport, { dir: this.dir, policy, timeoutMs, maxSize, maxFiles, sink, key, ...shared }, observer)
      .then(
        (result) => {
          this.observer.done?.(result);
          if (counts) this.settleOnce(result);
        },
        (err) => {
          const e = toSockxferError(err);
          this.observer.failed?.(transport.remote, info, e);
          if (counts) this.settleOnce(e);
        },
      )
      .finally(() => {
        const timer = this.pending.get(transport);
        if (timer !== undefined) clearTimeout(timer);
        this.pending.delete(transport);
        if (session) this.sessions--;
      });
    this.track(transport, run);
  }

  /** Keeps `transport` among the open connections until `settled`. */
  private track(transport: Transport, settled: Promise<void>): void {
    this.active.set(transport, settled);
    void settled.finally(() => {
      this.active.delete(transport);
      this.closing.delete(transport);
    });
  }

  /** Ends a connection with `error` (the peer is told where it can be), within the bound on connections being ended. */
  private end(transport: Transport, error: SockxferError): Promise<void> {
    this.endedWith.set(transport, error);
    this.closingNow(transport);
    return transport.abort(error).catch(() => {});
  }

  /** Counts `transport` among those being ended; past MAX_CLOSING the oldest is cut without waiting for its peer. */
  private closingNow(transport: Transport): void {
    this.closing.add(transport);
    while (this.closing.size > MAX_CLOSING) {
      const oldest = this.closing.values().next().value as Transport;
      this.closing.delete(oldest);
      oldest.destroy(new SockxferError('E_BUSY', `connection to ${oldest.remote} cut short: too many connections were being closed`));
    }
  }

  private settleOnce(outcome: TransferResult | SockxferError): void {
    const settle = this.onceSettled;
    this.onceSettled = null;
    settle?.(outcome);
  }

  private async closeListeners(): Promise<void> {
    const listeners = this.listeners.splice(0);
    await Promise.all(listeners.map((l) => l.close()));
  }

  /** Number of transfers in progress (connections past their HELLO). */
  get activeSessions(): number {
    return this.sessions;
  }

  /** Connections that have not said HELLO yet; at most maxPending. */
  get pendingHandshakes(): number {
    return this.pending.size;
  }

  /** Every connection not yet closed: pending, in a transfer, or being ended. */
  get openConnections(): number {
    return this.active.size;
  }

  /** Stops listening, ends every transfer in progress with `reason` and waits until their temporary files are gone. */
  async stop(reason: SockxferError): Promise<void> {
    this.stopping = true;
    if (this.cleaner) clearInterval(this.cleaner);
    for (const timer of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
    const closing = this.closeListeners();
    for (const transport of this.active.keys()) {
      this.endedWith.set(transport, reason);
      void transport.abort(reason);
    }
    await Promise.all([closing, ...this.active.values()]);
    this.fsSyncer.stop();
  }
}
