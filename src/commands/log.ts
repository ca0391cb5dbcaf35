/**
 * The receiver's --log: one JSON line per finished transfer, appended (O_APPEND) so that several
 * receivers and log rotation by rename both work. Lines are written one at a time, in order.
 */
import fs from 'node:fs/promises';
import type { SockxferError } from '../errors.js';
import type { TransferInfo, TransferResult } from '../transfer/index.js';
import { jsonLine } from './format.js';

export class TransferLog {
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;

  constructor(
    readonly file: string,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Checks that the log can be opened for appending (at start, so a typo fails at once). */
  async open(): Promise<void> {
    const handle = await fs.open(this.file, 'a', 0o640);
    await handle.close();
  }

  done(result: TransferResult): void {
    this.append({
      time: new Date().toISOString(),
      peer: result.peer,
      transport: result.transport,
      session: result.session,
      result: result.failed > 0 ? 'failed' : 'ok',
      ...(result.firstFailure ? { code: result.firstFailure.code, message: result.firstFailure.message } : {}),
      files: result.files,
      committed: result.committed,
      upToDate: result.upToDate,
      failed: result.failed,
      bytes: result.bytes,
      seconds: Number(result.seconds.toFixed(3)),
      hash: result.hash,
      entries: result.entries.map((e) => ({
        name: e.name,
        kind: e.kind,
        bytes: e.bytes,
        digest: e.digest,
        result: e.result,
        ...(e.code ? { code: e.code } : {}),
        ...(e.path ? { path: e.path } : {}),
      })),
    });
  }

  failed(peer: string, info: TransferInfo | null, error: SockxferError): void {
    this.append({
      time: new Date().toISOString(),
      peer,
      ...(info ? { transport: info.transport, session: info.session, name: info.name, files: info.files, bytes: info.bytes } : {}),
      result: 'failed',
      code: error.code,
      message: error.message,
    });
  }

  private append(record: Record<string, unknown>): void {
    // Names come from the peer: no control character of theirs reaches the file raw.
    const line = `${jsonLine(record)}\n`;
    this.chain = this.chain.then(() =>
      fs.appendFile(this.file, line).catch((err: Error) => {
        // Reported once; the receiver goes on serving.
        if (this.failure === null) {
          this.failure = err;
          this.onError(err);
        }
      }),
    );
  }

  /** Resolves when every line so far is written. */
  flush(): Promise<void> {
    return this.chain;
  }
}
