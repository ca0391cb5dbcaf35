/** `sockxfer send`: flags → SendOptions, events → output. */
import { SockxferError, toSockxferError } from '../errors.js';
import type { HashAlgorithm } from '../protocol/index.js';
import { sendFile } from '../transfer/index.js';
import { parseHostPort, type TransportKind, type UdpOptions } from '../transport/index.js';
import type { Output } from './output.js';

export interface SendFlags {
  hash: HashAlgorithm;
  chunkSize: number;
  timeout: number;
  transport: TransportKind;
  udp: UdpOptions;
}

/** Runs one send; returns the exit status. */
export async function runSend(file: string, target: string, flags: SendFlags, output: Output, signal: AbortSignal): Promise<number> {
  try {
    const result = await sendFile(
      { file, target: parseHostPort(target), hash: flags.hash, chunkSize: flags.chunkSize, timeoutMs: flags.timeout * 1000, transport: flags.transport, udp: flags.udp, signal },
      { start: (info) => output.start(info), progress: (info, done) => output.progress(info, done) },
    );
    output.done(result, 'sent');
    return 0;
  } catch (err) {
    const e = signal.aborted ? (signal.reason as SockxferError) : toSockxferError(err);
    output.error(e);
    return e.exitCode;
  }
}
