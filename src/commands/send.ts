/** `sockxfer send`: flags → SendOptions, events → output, retries, the receipt. */
import fs from 'node:fs/promises';
import { ERROR_CODES, SockxferError, toSockxferError } from '../errors.js';
import type { HashAlgorithm } from '../protocol/index.js';
import { VERSION, send, type TransferResult } from '../transfer/index.js';
import { parseHostPort, type TransportKind, type UdpOptions } from '../transport/index.js';
import { loadKey } from './keys.js';
import type { Output } from './output.js';

export interface SendFlags {
  streamName?: string;
  followSymlinks: boolean;
  hash: HashAlgorithm;
  chunkSize: number;
  timeout: number;
  transport: TransportKind;
  udp: UdpOptions;
  /** Bytes per second (0: no cap); over UDP the pacer applies it (udp.rateLimit). */
  rateLimit: number;
  /** Attempts after the first for failures worth retrying (exit 3 and 4). */
  retry: number;
  /** Seconds before the first retry; doubled each time, with jitter. */
  retryDelay: number;
  receipt?: string;
  /** --key-file (else SOCKXFER_KEY). */
  keyFile?: string;
}

/** Exit statuses worth another attempt: the network or the receiver's load, not the data or a policy. */
const RETRYABLE = new Set<number>([ERROR_CODES.E_CONNECTION_LOST.exit, ERROR_CODES.E_TIMEOUT.exit]);
/** The longest wait between attempts. */
const MAX_RETRY_DELAY_S = 300;

/** The wait before retry number `attempt` (1-based): base × 2^(attempt-1), capped, with jitter in [½, 1]. */
export function retryDelayMs(baseSeconds: number, attempt: number, random: () => number = Math.random): number {
  const full = Math.min(baseSeconds * 2 ** (attempt - 1), MAX_RETRY_DELAY_S) * 1000;
  return Math.round(full / 2 + (random() * full) / 2);
}

/** Runs one send (with its retries); returns the exit status. */
export async function runSend(paths: string[], target: string, flags: SendFlags, output: Output, signal: AbortSignal): Promise<number> {
  const started = new Date();
  const loaded = await loadKey(flags.keyFile);
  if (loaded?.warning) output.warn(loaded.warning, { keyFile: loaded.source });
  const stdinUsed = paths.includes('-');
  let attempt = 0;
  for (;;) {
    attempt++;
    let result: TransferResult | null = null;
    let status: number;
    let error: SockxferError | null = null;
    try {
      result = await send(
        {
          sources: paths,
          streamName: flags.streamName,
          stdin: stdinUsed ? process.stdin : undefined,
          followSymlinks: flags.followSymlinks,
          target: parseHostPort(target),
          hash: flags.hash,
          chunkSize: flags.chunkSize,
          timeoutMs: flags.timeout * 1000,
          transport: flags.transport,
          udp: flags.udp,
          rateLimit: flags.transport === 'tcp' ? flags.rateLimit : 0,
          key: loaded?.key ?? null,
          signal,
        },
        {
          start: (info) => output.start(info),
          progress: (info, done) => output.progress(info, done),
          entry: (info, entry) => output.entry(info, entry, 'sent'),
          skipped: (s) => (attempt === 1 ? output.warn(`skipped ${s.path}: ${s.reason}`, { path: s.path, reason: s.reason }) : undefined),
        },
      );
      status = result.firstFailure ? ERROR_CODES[result.firstFailure.code].exit : 0;
    } catch (err) {
      error = signal.aborted ? (signal.reason as SockxferError) : toSockxferError(err);
      status = error.exitCode;
    }
    // Standard input cannot be read twice: a stream is never retried.
    const again = status !== 0 && RETRYABLE.has(status) && attempt <= flags.retry && !stdinUsed && !signal.aborted;
    if (again) {
      const delay = retryDelayMs(flags.retryDelay, attempt);
      const why = error?.message ?? result?.firstFailure?.message ?? '';
      output.retrying(attempt, flags.retry + 1, delay, error?.code ?? result?.firstFailure?.code ?? 'E_INTERNAL', why);
      if (result) output.forget(result.session);
      const waited = await sleep(delay, signal);
      if (waited) continue;
      error = signal.reason as SockxferError;
      status = error.exitCode;
      result = null;
    }
    if (result) status = output.finished(result, 'sent');
    else output.error(error!);
    if (flags.receipt !== undefined) {
      try {
        await writeReceipt(flags.receipt, { started, target, attempts: attempt, result, error, status });
      } catch (err) {
        output.error(new SockxferError('E_IO', `cannot write the receipt ${flags.receipt}: ${(err as Error).message}`));
        if (status === 0) status = ERROR_CODES.E_IO.exit;
      }
    }
    return status;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

interface ReceiptInput {
  started: Date;
  target: string;
  attempts: number;
  result: TransferResult | null;
  error: SockxferError | null;
  status: number;
}

/** The receipt: a JSON manifest of what the receiver said about every file, written atomically. */
async function writeReceipt(file: string, r: ReceiptInput): Promise<void> {
  const res = r.result;
  const failure = res?.firstFailure ?? (r.error ? { code: r.error.code, message: r.error.message } : null);
  const receipt = {
    receipt: 1,
    software: `sockxfer ${VERSION}`,
    started: r.started.toISOString(),
    finished: new Date().toISOString(),
    receiver: res?.peer ?? r.target,
    transport: res?.transport ?? null,
    session: res?.session ?? null,
    hashAlgorithm: res?.hash ?? null,
    attempts: r.attempts,
    result: r.status === 0 ? 'ok' : 'failed',
    exitCode: r.status,
    ...(failure ? { code: failure.code, message: failure.message } : {}),
    totals: {
      files: res?.files ?? 0,
      committed: res?.committed ?? 0,
      upToDate: res?.upToDate ?? 0,
      failed: res?.failed ?? 0,
      bytes: res?.bytes ?? 0,
      sentBytes: res?.sentBytes ?? 0,
    },
    files: (res?.entries ?? []).map((e) => ({
      name: e.name,
      kind: e.kind,
      bytes: e.bytes,
      hash: e.digest,
      result: e.result,
      ...(e.code ? { code: e.code, message: e.message } : {}),
      ...(e.path ? { remotePath: e.path } : {}),
      ...(e.sentBytes !== undefined ? { sentBytes: e.sentBytes } : {}),
    })),
  };
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, `${JSON.stringify(receipt, null, 2)}\n`);
  await fs.rename(tmp, file);
}
