/** `sockxfer receive`: flags → ReceiverOptions, events → output, runs until a signal (or one transfer with --once). */
import { SockxferError, toSockxferError } from '../errors.js';
import { Receiver, type OverwritePolicy } from '../transfer/index.js';
import { formatHostPort, type TransportKind } from '../transport/index.js';
import { TransferLog } from './log.js';
import { KEY_ENV, loadKey } from './keys.js';
import type { Output } from './output.js';

export interface ReceiveFlags {
  port: number;
  host?: string;
  dir: string;
  policy: OverwritePolicy;
  once: boolean;
  timeout: number;
  /** --handshake-timeout, seconds (default: the receiver's). */
  handshakeTimeout?: number;
  transports: TransportKind[];
  maxSize?: number;
  maxFiles?: number;
  maxSessions?: number;
  log?: string;
  partialTtlHours?: number;
  /** --stdout: the one file goes here. */
  sink?: NodeJS.WritableStream;
  /** --key-file (else SOCKXFER_KEY). */
  keyFile?: string;
}

/** Runs the receiver; returns the exit status. */
export async function runReceive(flags: ReceiveFlags, output: Output, signal: AbortSignal): Promise<number> {
  const loaded = await loadKey(flags.keyFile);
  if (loaded?.warning) output.warn(loaded.warning, { keyFile: loaded.source });
  const log = flags.log === undefined ? null : new TransferLog(flags.log, (err) => output.warn(`cannot write the log ${flags.log}: ${err.message}`, { log: flags.log }));
  if (log) {
    try {
      await log.open();
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      throw new SockxferError(e.code === 'E_INTERNAL' ? 'E_IO' : e.code, `cannot open the log ${flags.log}: ${(err as Error).message}`, { cause: err });
    }
  }
  const receiver = new Receiver(
    {
      dir: flags.dir,
      host: flags.host,
      port: flags.port,
      policy: flags.policy,
      once: flags.once,
      timeoutMs: flags.timeout * 1000,
      handshakeTimeoutMs: flags.handshakeTimeout === undefined ? undefined : flags.handshakeTimeout * 1000,
      transports: flags.transports,
      maxSize: flags.maxSize,
      maxFiles: flags.maxFiles,
      maxSessions: flags.maxSessions,
      sink: flags.sink,
      key: loaded?.key ?? null,
      partialTtlMs: flags.partialTtlHours === undefined ? undefined : flags.partialTtlHours * 3_600_000,
    },
    {
      start: (info) => output.start(info),
      progress: (info, done) => output.progress(info, done),
      entry: (info, entry) => output.entry(info, entry, 'received'),
      done: (result) => {
        log?.done(result);
        output.finished(result, 'received');
      },
      failed: (peer, info, err) => {
        log?.failed(peer, info, err);
        output.error(err, info ? { session: info.session, name: info.name, peer } : { peer });
      },
    },
  );
  const interrupted = new Promise<SockxferError>((resolve) => {
    if (signal.aborted) resolve(signal.reason as SockxferError);
    signal.addEventListener('abort', () => resolve(signal.reason as SockxferError), { once: true });
  });
  try {
    const addresses = await receiver.start();
    for (const a of addresses) output.listening(a.host, a.port, a.transport, formatHostPort(a.host, a.port));
    if (loaded === null) {
      output.warn(`no key (--key-file or ${KEY_ENV}): transfers to this receiver are not encrypted, and anyone who can reach it can send files`, { encrypted: false });
    } else {
      output.info(`key from ${loaded.source}: only senders with this key are served; transfers are encrypted (AES-256-GCM)`);
    }
    output.info(`writing to ${receiver.dir}${flags.once ? ' (one transfer, then exit)' : '; stop with Ctrl-C'}`);
  } catch (err) {
    await receiver.stop(new SockxferError('E_INTERRUPTED', 'stopped'));
    throw err;
  }
  try {
    if (flags.once) {
      const first = await Promise.race([receiver.firstOutcome.then((outcome) => ({ outcome })), interrupted.then((reason) => ({ reason }))]);
      if ('outcome' in first) {
        // The transfer already reported itself (done or error) through the observer.
        await receiver.stop(new SockxferError('E_INTERRUPTED', 'stopped after one transfer'));
        const o = first.outcome;
        if (o instanceof SockxferError) return o.exitCode;
        return o.firstFailure ? new SockxferError(o.firstFailure.code, '').exitCode : 0;
      }
      await receiver.stop(first.reason);
      output.error(first.reason);
      return first.reason.exitCode;
    }
    const reason = await interrupted;
    output.info(`stopping: ${reason.message}`);
    await receiver.stop(reason);
    output.error(reason);
    return reason.exitCode;
  } finally {
    await log?.flush();
  }
}
