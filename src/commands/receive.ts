/** `sockxfer receive`: flags → ReceiverOptions, events → output, runs until a signal (or one transfer with --once). */
import { SockxferError } from '../errors.js';
import { Receiver } from '../transfer/index.js';
import { formatHostPort, type TransportKind } from '../transport/index.js';
import type { Output } from './output.js';

export interface ReceiveFlags {
  port: number;
  host?: string;
  dir: string;
  overwrite: boolean;
  once: boolean;
  timeout: number;
  transports: TransportKind[];
}

/** Runs the receiver; returns the exit status. */
export async function runReceive(flags: ReceiveFlags, output: Output, signal: AbortSignal): Promise<number> {
  const receiver = new Receiver(
    { dir: flags.dir, host: flags.host, port: flags.port, overwrite: flags.overwrite, once: flags.once, timeoutMs: flags.timeout * 1000, transports: flags.transports },
    {
      start: (info) => output.start(info),
      progress: (info, done) => output.progress(info, done),
      done: (result) => output.done(result, 'received'),
      failed: (peer, info, err) => output.error(err, info ? { session: info.session, name: info.name, peer } : { peer }),
    },
  );
  const interrupted = new Promise<SockxferError>((resolve) => {
    if (signal.aborted) resolve(signal.reason as SockxferError);
    signal.addEventListener('abort', () => resolve(signal.reason as SockxferError), { once: true });
  });
  try {
    const addresses = await receiver.start();
    for (const a of addresses) output.listening(a.host, a.port, a.transport, formatHostPort(a.host, a.port));
    output.info(`writing to ${receiver.dir}${flags.once ? ' (one transfer, then exit)' : '; stop with Ctrl-C'}`);
  } catch (err) {
    await receiver.stop(new SockxferError('E_INTERRUPTED', 'stopped'));
    throw err;
  }
  if (flags.once) {
    const first = await Promise.race([
      receiver.firstOutcome.then((outcome) => ({ outcome })),
      interrupted.then((reason) => ({ reason })),
    ]);
    if ('outcome' in first) {
      // The transfer already reported itself (done or error) through the observer.
      await receiver.stop(new SockxferError('E_INTERRUPTED', 'stopped after one transfer'));
      return first.outcome instanceof SockxferError ? first.outcome.exitCode : 0;
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
}
