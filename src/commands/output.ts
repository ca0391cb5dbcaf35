/**
 * Everything sockxfer prints goes through here: NDJSON events on stdout (--json), human lines
 * and progress bars on stderr. Bars only when stderr is a terminal; --quiet leaves errors only.
 */
import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import { ERROR_CODES, type SockxferError } from '../errors.js';
import { printableName, type EntryResult, type TransferInfo, type TransferResult } from '../transfer/index.js';
import { formatBitRate, formatBytes, formatRate, formatSeconds, jsonLine } from './format.js';
import type { TransportStats } from '../transport/index.js';

/**
 * cli-progress, loaded the first time a bar is drawn: a script's run (no terminal) never needs
 * it, and loading it costs about 12 ms of every start-up.
 */
let progressModule: typeof cliProgress | null = null;
function bars(): typeof cliProgress {
  progressModule ??= createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
  return progressModule;
}

/** At most this many progress events a second per transfer (and as many bar redraws). */
const PROGRESS_INTERVAL_MS = 250;

export interface OutputOptions {
  json: boolean;
  quiet: boolean;
  /** Overridable for tests; defaults to process streams. */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WriteStream | NodeJS.WritableStream;
}

interface Tracked {
  info: TransferInfo;
  started: number;
  lastEmit: number;
  bar: cliProgress.SingleBar | null;
}

export class Output {
  private readonly stdout: NodeJS.WritableStream;
  private readonly stderr: NodeJS.WritableStream;
  private readonly tty: boolean;
  private multibar: cliProgress.MultiBar | null = null;
  private readonly tracked = new Map<string, Tracked>();

  constructor(private readonly options: OutputOptions) {
    this.stdout = options.stdout ?? process.stdout;
    this.stderr = options.stderr ?? process.stderr;
    this.tty = !options.quiet && (this.stderr as NodeJS.WriteStream).isTTY === true;
  }

  /** One NDJSON event on stdout (only with --json). */
  event(event: string, fields: Record<string, unknown>): void {
    if (this.options.json) this.stdout.write(`${jsonLine({ event, ...fields })}\n`);
  }

  /** A human line on stderr, unless --quiet. */
  info(line: string): void {
    if (!this.options.quiet) this.always(line);
  }

  /** A line that is printed whatever the flags (where a receiver listens, errors). */
  always(line: string): void {
    if (this.multibar) this.multibar.log(`${line}\n`);
    else this.stderr.write(`${line}\n`);
  }

  listening(host: string, port: number, transport: string, shown: string): void {
    this.event('listening', { host, port, transport });
    this.always(`listening on ${shown} (${transport})`);
  }

  start(info: TransferInfo): void {
    const now = performance.now();
    let bar: cliProgress.SingleBar | null = null;
    if (this.tty) {
      const { MultiBar, Presets } = bars();
      this.multibar ??= new MultiBar(
        {
          stream: this.stderr as NodeJS.WriteStream,
          format: ' {name} [{bar}] {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}',
          hideCursor: true,
          clearOnComplete: true,
          stopOnComplete: false,
          fps: 1000 / PROGRESS_INTERVAL_MS,
          etaBuffer: 20,
        },
        Presets.shades_classic,
      );
      bar = this.multibar.create(Math.max(info.bytes, 1), 0, { name: printableName(info.name).slice(0, 32), done: formatBytes(0), size: formatBytes(info.bytes), rate: '' });
    }
    this.tracked.set(info.session, { info, started: now, lastEmit: 0, bar });
    this.event('start', { session: info.session, name: info.name, bytes: info.bytes, hash: info.hash, transport: info.transport, peer: info.peer, encrypted: info.encrypted });
  }

  progress(info: TransferInfo, done: number): void {
    const t = this.tracked.get(info.session);
    if (!t) return;
    const now = performance.now();
    if (now - t.lastEmit < PROGRESS_INTERVAL_MS && done < info.bytes) return;
    t.lastEmit = now;
    const seconds = (now - t.started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    t.bar?.update(done, { done: formatBytes(done), rate: formatRate(rate) });
    this.event('progress', { session: info.session, name: info.name, bytes: done, total: info.bytes, bytesPerSecond: Math.round(rate) });
  }

  private untrack(session: string): void {
    const t = this.tracked.get(session);
    if (t?.bar) {
      t.bar.stop();
      this.multibar?.remove(t.bar);
    }
    this.tracked.delete(session);
    if (this.tracked.size === 0 && this.multibar) {
      this.multibar.stop();
      this.multibar = null;
    }
  }

  /** One entry of a transfer is finished: a `file` event; a line when it failed in a transfer of several. */
  entry(info: TransferInfo, e: EntryResult, verb: 'sent' | 'received'): void {
    this.event('file', {
      session: info.session,
      index: e.index,
      name: e.name,
      kind: e.kind,
      bytes: e.bytes,
      ...(e.digest ? { hash: e.digest } : {}),
      result: e.result,
      ...(e.code ? { code: e.code, exitCode: ERROR_CODES[e.code].exit, message: e.message } : {}),
      // The sender knows where the receiver put it, relative to the receiver's folder.
      ...(e.path ? (verb === 'sent' ? { remotePath: e.path } : { path: e.path }) : {}),
      ...(e.sentBytes !== undefined && verb === 'sent' ? { sentBytes: e.sentBytes } : {}),
    });
    if (e.result === 'failed' && info.files !== 1) this.always(`sockxfer: ${printableName(e.name)}: ${e.message ?? 'failed'} [${e.code}]`);
  }

  /**
   * The end of a transfer: the summary and a `done` event when every entry arrived (returns 0),
   * or an `error` event with the counts when some failed (returns the first failure's exit status).
   */
  finished(result: TransferResult, verb: 'sent' | 'received'): number {
    this.untrack(result.session);
    const where = verb === 'sent' ? `to ${result.peer}` : `from ${result.peer}`;
    const single = result.entries.length === 1 ? result.entries[0]! : null;
    const rate = `${result.encrypted ? '(encrypted) ' : ''}in ${formatSeconds(result.seconds)}, ${formatRate(result.bytesPerSecond)}`;
    const resumed = verb === 'sent' && result.sentBytes !== undefined && result.sentBytes < result.bytes ? `; ${formatBytes(result.sentBytes)} of it sent` : '';
    if (result.failed === 0) {
      if (single && single.result === 'up-to-date') {
        this.info(`${printableName(single.name)} (${formatBytes(single.bytes)}) is up to date ${verb === 'sent' ? 'at' : 'from'} ${result.peer}; ${result.hash} ${single.digest}, nothing sent`);
      } else if (single && single.kind !== 'directory') {
        const into = verb === 'received' && single.path ? ` → ${printableName(single.path)}` : ', committed';
        this.info(`${verb} ${printableName(single.name)} (${formatBytes(single.bytes)}) ${where} over ${result.transport} ${rate}; ${result.hash} ${single.digest}${into}${resumed}`);
      } else {
        const dirs = result.entries.filter((e) => e.kind === 'directory').length;
        const counts = `${result.committed} committed${result.upToDate > 0 ? `, ${result.upToDate} up to date` : ''}`;
        this.info(
          `${verb} ${printableName(result.name)}: ${result.files} file${result.files === 1 ? '' : 's'}${dirs > 0 ? ` and ${dirs} folder${dirs === 1 ? '' : 's'}` : ''} (${formatBytes(result.bytes)}) ${where} over ${result.transport} ${rate}; ${counts}${resumed}`,
        );
      }
      if (result.stats) this.info(`  ${statsLine(result.transport, result.stats, verb === 'sent')}`);
      this.event('done', { ...summaryFields(result, verb), ...(result.stats ? { stats: jsonStats(result.stats) } : {}) });
      return 0;
    }
    const first = result.firstFailure!;
    const info = ERROR_CODES[first.code];
    const what = single ? '' : `${result.failed} of ${result.entries.length} entries failed (${result.committed} committed, ${result.upToDate} up to date); first: `;
    this.always(`sockxfer: ${what}${printableName(first.name)}: ${first.message} [${first.code}, exit ${info.exit}]`);
    this.event('error', { code: first.code, exitCode: info.exit, message: first.message, ...summaryFields(result, verb) });
    return info.exit;
  }

  /** An attempt failed with a retryable status; the next starts after `delayMs`. */
  retrying(attempt: number, attempts: number, delayMs: number, code: string, message: string): void {
    this.always(`sockxfer: attempt ${attempt} of ${attempts} failed: ${message} [${code}]; retrying in ${formatSeconds(delayMs / 1000)} (partial data resumes)`);
    this.event('retry', { attempt, attempts, delayMs, code, message });
  }

  /** Drops a transfer's bar without a summary (a failed attempt that is retried). */
  forget(session: string): void {
    this.untrack(session);
  }

  /** Something worth knowing that does not stop anything: a line on stderr and a `warning` event. */
  warn(line: string, fields: Record<string, unknown> = {}): void {
    this.always(`sockxfer: warning: ${printableName(line)}`);
    this.event('warning', { message: line, ...fields });
  }

  /** A failure: one line on stderr (always) and the `error` event. */
  error(err: SockxferError, context: { session?: string; name?: string; peer?: string } = {}): void {
    if (context.session) this.untrack(context.session);
    const prefix = context.name ? `transfer of ${printableName(context.name)}${context.peer ? ` from ${context.peer}` : ''} failed: ` : '';
    // Messages may quote what a peer said (an ERROR, a CLOSE): escaped here, whichever layer built them.
    this.always(`sockxfer: ${prefix}${printableName(err.message)} [${err.code}, exit ${ERROR_CODES[err.code].exit}]`);
    this.event('error', { code: err.code, exitCode: err.exitCode, message: err.message, ...context });
  }

  /** Stops any bars (before exiting). */
  close(): void {
    for (const session of [...this.tracked.keys()]) this.untrack(session);
  }
}

/** The second summary line: what the transport did. UDP shows the work of its own reliability layer. */
export function statsLine(transport: string, s: TransportStats, sender: boolean): string {
  if (transport !== 'udp' || s.packetsSent === undefined) {
    return `${transport}: ${formatBytes(s.bytesSent)} sent, ${formatBytes(s.bytesReceived)} received (the kernel did the acks, retransmissions and pacing)`;
  }
  const pct = (n: number, of: number) => (of > 0 ? `${((100 * n) / of).toFixed(2)}%` : '0%');
  const ms = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${v.toFixed(v < 10 ? 2 : 1)} ms`);
  return (
    `udp: ${s.packetsSent} packets sent, ${s.packetsReceived} received; ${s.retransmitted} retransmitted (${pct(s.retransmitted ?? 0, s.packetsSent)}), ` +
    `${s.lost} declared lost, ${s.spurious} spurious, ${s.duplicates} duplicates, ${s.corrupt} corrupt dropped; ` +
    (s.unauthenticated ? `${s.unauthenticated} failed authentication; ` : '') +
    `RTT ${ms(s.srttMs)} (min ${ms(s.minRttMs)})` +
    (s.io ? `; io ${s.io}` : '') +
    // The sending rate means something on the side that sent the data.
    (sender ? `; rate ${formatBitRate(s.rateBytesPerSecond ?? 0)} (${s.congestionControl})` : '')
  );
}

/** The fields a transfer's `done` (or failing `error`) event carries. */
function summaryFields(r: TransferResult, verb: 'sent' | 'received'): Record<string, unknown> {
  const single = r.entries.length === 1 ? r.entries[0]! : null;
  return {
    session: r.session,
    name: r.name,
    files: r.files,
    committed: r.committed,
    upToDate: r.upToDate,
    failed: r.failed,
    bytes: r.bytes,
    ...(r.sentBytes !== undefined ? { sentBytes: r.sentBytes } : {}),
    ...(single?.digest ? { hash: single.digest } : {}),
    hashAlgorithm: r.hash,
    seconds: Number(r.seconds.toFixed(6)),
    bytesPerSecond: Math.round(r.bytesPerSecond),
    transport: r.transport,
    peer: r.peer,
    encrypted: r.encrypted,
    ...(single?.path ? (verb === 'sent' ? { remotePath: single.path } : { path: single.path }) : {}),
  };
}

/** Stats for the `done` event, with RTTs rounded to microseconds. */
function jsonStats(s: TransportStats): Record<string, unknown> {
  const round = (v: number | null | undefined) => (v === null || v === undefined ? v : Number(v.toFixed(3)));
  return { ...s, ...(s.srttMs !== undefined ? { srttMs: round(s.srttMs) } : {}), ...(s.minRttMs !== undefined ? { minRttMs: round(s.minRttMs) } : {}) };
}
