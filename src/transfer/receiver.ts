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

export interface ReceiverOptions extends Omit<ReceiveOptions, 'dir' | 'syncer' | 'resumeLocks' | 'sink' | 'fsSyncer' | 'partialUsers'> {
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
  /** Transfers served at once; more are refused with E_BUSY (default DEFAULT_MAX_SESSIONS). */
  maxSessions?: number;
  /** Partial data (of interrupted transfers) untouched this long is removed (default a day). */
  partialTtlMs?: number;
}

export const DEFAULT_MAX_SESSIONS = 64;

export interface ListenAddress {
  host: string;
  port: number;
  transport: TransportKind;
}

export interface ReceiverObserver extends SessionObserver {
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
  private readonly active = new Map<Transport, Promise<void>>();
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
          const listener = kind === 'tcp' ? await listenTcp(where, (t) => this.serve(t)) : await listenUdp(where, (t) => this.serve(t));
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
    const maxSessions = this.options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (this.active.size >= maxSessions) {
      // Told at once, before its HELLO: a sender that retries later gets in.
      const busy = new SockxferError('E_BUSY', `this receiver serves ${maxSessions} transfers at once already; try again later`);
      this.observer.failed?.(transport.remote, null, busy);
      void transport.abort(busy).catch(() => {});
      return;
    }
    let info: TransferInfo | null = null;
    let counts = false;
    const observer: SessionObserver = {
      hello: (peer) => {
        if (this.options.once) {
          if (this.onceSettled === null) throw new SockxferError('E_REFUSED', 'this receiver serves one transfer and has one');
          counts = true;
          void this.closeListeners();
        }
        this.observer.hello?.(peer);
      },
      start: (i) => {
        info = i;
        this.observer.start?.(i);
      },
      progress: (i, done) => this.observer.progress?.(i, done),
      entry: (i, e) => this.observer.entry?.(i, e),
    };
    const { policy, timeoutMs, maxSize, maxFiles, sink } = this.options;
    const run = receiveSession(transport, { dir: this.dir, policy, timeoutMs, maxSize, maxFiles, syncer: this.syncer, resumeLocks: this.resumeLocks, sink, fsSyncer: this.fsSyncer, partialUsers: this.partialUsers }, observer).then(
      (result) => {
        this.observer.done?.(result);
        if (counts) this.settleOnce(result);
      },
      (err) => {
        const e = toSockxferError(err);
        this.observer.failed?.(transport.remote, info, e);
        if (counts) this.settleOnce(e);
      },
    );
    this.active.set(transport, run);
    void run.finally(() => this.active.delete(transport));
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

  /** Number of transfers in progress. */
  get activeSessions(): number {
    return this.active.size;
  }

  /** Stops listening, ends every transfer in progress with `reason` and waits until their temporary files are gone. */
  async stop(reason: SockxferError): Promise<void> {
    this.stopping = true;
    if (this.cleaner) clearInterval(this.cleaner);
    const closing = this.closeListeners();
    for (const transport of this.active.keys()) void transport.abort(reason);
    await Promise.all([closing, ...this.active.values()]);
    this.fsSyncer.stop();
  }
}
