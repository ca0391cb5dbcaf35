/**
 * A receiver: listens, serves every sender that connects (one after another and at the same
 * time), and stops cleanly, removing the temporary files of transfers it cuts short.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { SockxferError, toSockxferError } from '../errors.js';
import { listenTcp, type TcpListener, type Transport, type TransportKind } from '../transport/index.js';
import type { TransferInfo, TransferResult } from './events.js';
import { receiveSession, type ReceiveOptions, type SessionObserver } from './receive-session.js';

export interface ReceiverOptions extends Omit<ReceiveOptions, 'dir'> {
  /** The target folder; created if missing. */
  dir: string;
  /** Listen address; all interfaces (IPv6 and IPv4) when undefined. */
  host?: string;
  port: number;
  /** Serve one transfer, then stop. Stray connections that never say HELLO do not count. */
  once: boolean;
}

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

export class Receiver {
  private listeners: TcpListener[] = [];
  private readonly active = new Map<Transport, Promise<void>>();
  private stopping = false;
  private onceSettled: ((outcome: TransferResult | SockxferError) => void) | null = null;
  /** With `once`: the outcome of the first transfer. */
  readonly firstOutcome: Promise<TransferResult | SockxferError>;
  readonly dir: string;

  constructor(
    private readonly options: ReceiverOptions,
    private readonly observer: ReceiverObserver = {},
  ) {
    this.dir = path.resolve(options.dir);
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
    const tcp = await listenTcp({ host: this.options.host, port: this.options.port }, (t) => this.serve(t));
    this.listeners.push(tcp);
    return [{ host: tcp.host, port: tcp.port, transport: 'tcp' }];
  }

  private serve(transport: Transport): void {
    if (this.stopping) {
      transport.destroy();
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
    };
    const run = receiveSession(transport, { dir: this.dir, overwrite: this.options.overwrite, timeoutMs: this.options.timeoutMs }, observer).then(
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
    const closing = this.closeListeners();
    for (const transport of this.active.keys()) void transport.abort(reason);
    await Promise.all([closing, ...this.active.values()]);
  }
}
