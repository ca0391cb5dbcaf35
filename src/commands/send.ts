/** `sockxfer send`: flags → SendOptions, events → output. */
import { SockxferError, toSockxferError } from '../errors.js';
import type { HashAlgorithm } from '../protocol/index.js';
import { send } from '../transfer/index.js';
import { parseHostPort, type TransportKind, type UdpOptions } from '../transport/index.js';
import type { Output } from './output.js';

export interface SendFlags {
  streamName?: string;
  followSymlinks: boolean;
  hash: HashAlgorithm;
  chunkSize: number;
  timeout: number;
  transport: TransportKind;
  udp: UdpOptions;
}

/** Runs one send; returns the exit status. */
export async function runSend(paths: string[], target: string, flags: SendFlags, output: Output, signal: AbortSignal): Promise<number> {
  try {
    const result = await send(
      {
        sources: paths,
        streamName: flags.streamName,
        stdin: paths.includes('-') ? process.stdin : undefined,
        followSymlinks: flags.followSymlinks,
        target: parseHostPort(target),
        hash: flags.hash,
        chunkSize: flags.chunkSize,
        timeoutMs: flags.timeout * 1000,
        transport: flags.transport,
        udp: flags.udp,
        signal,
      },
      {
        start: (info) => output.start(info),
        progress: (info, done) => output.progress(info, done),
        entry: (info, entry) => output.entry(info, entry, 'sent'),
        skipped: (s) => output.warn(`skipped ${s.path}: ${s.reason}`, { path: s.path, reason: s.reason }),
      },
    );
    return output.finished(result, 'sent');
  } catch (err) {
    const e = signal.aborted ? (signal.reason as SockxferError) : toSockxferError(err);
    output.error(e);
    return e.exitCode;
  }
}
