/**
 * The sending side of a transfer: offer every file, folder and stream at once, then stream
 * the files back to back (no round trip between them) while the receiver answers each with a
 * VERDICT. A file counts as delivered only when the receiver says it committed it with the same
 * whole-file hash (or already held an identical one).
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { SockxferError, toSockxferError } from '../errors.js';
import {
  CAP_KEY,
  DEFAULT_CHUNK_SIZE,
  MAX_CONTROL_BODY,
  MAX_OFFER_ENTRIES,
  MAX_PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
  WHOLE_TRANSFER,
  type AcceptEntry,
  type HashAlgorithm,
  type OfferEntry,
  type VerdictFrame,
} from '../protocol/index.js';
import { DEFAULT_UDP_OPTIONS, connectTcp, connectUdp, type HostPort, type Transport, type TransportKind, type UdpOptions } from '../transport/index.js';
import { transferName, type EntryResult, type TransferInfo, type TransferObserver, type TransferResult } from './events.js';
import { createHasher, hashFile, type Hasher } from './hash.js';
import { authenticateToReceiver } from './auth.js';
import { expectFrame, peerError } from './peer.js';
import { RangeSet } from './range-set.js';
import { collectSources, type Skipped, type Source } from './sources.js';
import { SOFTWARE } from './version.js';

/** File bytes read per positional read: large reads halve the syscalls and double throughput over Node's 64 KiB default. */
const READ_BLOCK = 4 * 1024 * 1024;
/**
 * Files sent whose VERDICT has not come yet. The receiver finishes files in the background; this
 * bounds how many it holds open for one sender (its own limit is twice this).
 */
const MAX_UNANSWERED = 1024;
/** Files up to this size are read whole on the calling thread (see sendSmall). */
const SMALL_FILE = 256 * 1024;

export interface SendOptions {
  /** Files and folders to send; "-" is `stdin`, sent as `streamName`. */
  sources: string[];
  streamName?: string;
  stdin?: NodeJS.ReadableStream;
  /** Follow symbolic links inside folders (default: skip them with a warning). */
  followSymlinks?: boolean;
  target: HostPort;
  hash: HashAlgorithm;
  chunkSize: number;
  /** Connect timeout, and the longest the transfer may go without progress. */
  timeoutMs: number;
  /** Default TCP. */
  transport?: TransportKind;
  /** Datagram size, congestion control and rate cap (UDP only). */
  udp?: UdpOptions;
  /** Aborting it ends the transfer with E_INTERRUPTED and tells the receiver. */
  signal?: AbortSignal;
  /** Bytes per second the data may go at (0 or undefined: as fast as the transport goes). UDP paces by udp.rateLimit instead. */
  rateLimit?: number;
  /** The pre-shared key: prove it, check the receiver's proof, encrypt everything (protocol/secure.ts). */
  key?: Buffer | null;
}

export interface SendObserver extends TransferObserver {
  /** A link or special file inside a folder that is not sent. */
  skipped?(skipped: Skipped): void;
}

export const DEFAULT_SEND_OPTIONS = { hash: 'xxh128', chunkSize: DEFAULT_CHUNK_SIZE, timeoutMs: 30_000, transport: 'tcp', udp: DEFAULT_UDP_OPTIONS } as const;

function sourceError(err: unknown, file: string): SockxferError {
  const e = toSockxferError(err, 'E_IO');
  const code = e.code === 'E_INTERNAL' ? 'E_IO' : e.code;
  return new SockxferError(code, `cannot read ${file}: ${(err as Error).message}`, { cause: err });
}

/**
 * Sends everything in `options.sources`; resolves with what became of each entry once the
 * receiver answered them all (some may have failed: see `failed` and `firstFailure`). Rejects
 * when the transfer as a whole failed (connection, refusal, protocol).
 */
export async function send(options: SendOptions, observer: SendObserver = {}): Promise<TransferResult> {
  const { sources, skipped } = await collectSources(options.sources, { followSymlinks: options.followSymlinks, streamName: options.streamName });
  for (const s of skipped) observer.skipped?.(s);
  if (sources.length === 0) throw new SockxferError('E_USAGE', 'nothing to send');
  if (sources.some((s) => s.kind === 'stream') && !options.stdin) throw new SockxferError('E_USAGE', 'no standard input to send');
  const result = await sendSession(sources, options, observer);
  // Files whose resumed partial data turned out to belong to other content (the receiver
  // discarded it) start over, once, in a session of their own.
  const again = result.entries.filter((e) => e.result === 'failed' && e.code === 'E_HASH_MISMATCH' && e.resumed);
  if (again.length === 0) return result;
  const retry = await sendSession(
    again.map((e) => sources[e.index]!),
    options,
    { entry: (info, e) => observer.entry?.(result, { ...e, index: again[e.index]!.index }) },
  );
  for (const e of retry.entries) result.entries[again[e.index]!.index] = { ...e, index: again[e.index]!.index };
  return summarize(result, result.entries, (result.sentBytes ?? 0) + (retry.sentBytes ?? 0), result.seconds + retry.seconds);
}

/** Recounts a result after some of its entries changed. */
function summarize(base: TransferResult, entries: EntryResult[], sentBytes: number, seconds: number): TransferResult {
  const count = (r: EntryResult['result']) => entries.filter((e) => e.kind !== 'directory' && e.result === r).length;
  const failed = entries.find((e) => e.result === 'failed');
  const only = entries.length === 1 ? entries[0]! : null;
  const { firstFailure: _old, digest: _digest, ...rest } = base;
  return {
    ...rest,
    entries,
    seconds,
    bytesPerSecond: seconds > 0 ? sentBytes / seconds : 0,
    committed: count('committed'),
    upToDate: count('up-to-date'),
    failed: entries.filter((e) => e.result === 'failed').length,
    sentBytes,
    ...(failed ? { firstFailure: { code: failed.code!, message: failed.message ?? '', name: failed.name } } : {}),
    ...(only?.digest ? { digest: only.digest } : {}),
  };
}

async function sendSession(sources: Source[], options: SendOptions, observer: SendObserver): Promise<TransferResult> {
  const session = randomBytes(8).readBigUInt64BE();
  options.signal?.throwIfAborted();
  const transport: Transport =
    options.transport === 'udp'
      ? await connectUdp(options.target, { ...(options.udp ?? DEFAULT_UDP_OPTIONS), keyed: Boolean(options.key), timeoutMs: options.timeoutMs, session, signal: options.signal })
      : await connectTcp(options.target, { timeoutMs: options.timeoutMs, session });
  const onAbort = () => void transport.abort(new SockxferError('E_INTERRUPTED', 'interrupted; the transfer was abandoned'));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    transport.setIdleTimeout(options.timeoutMs);
    return await new OutgoingTransfer(transport, sources, options, observer).run();
  } catch (err) {
    const e = toSockxferError(err);
    await transport.abort(e);
    throw e;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** Sends one file; resolves when the receiver has committed it (or holds it already), rejects with why not. */
export async function sendFile(options: Omit<SendOptions, 'sources'> & { file: string }, observer: SendObserver = {}): Promise<TransferResult> {
  const result = await send({ ...options, sources: [options.file] }, observer);
  if (result.firstFailure) throw new SockxferError(result.firstFailure.code, result.firstFailure.message, { remote: true });
  return result;
}

class OutgoingTransfer {
  private readonly entries: OfferEntry[];
  private readonly accepts = new Map<number, AcceptEntry>();
  private readonly results = new Map<number, EntryResult>();
  private readonly verdicts = new Map<number, VerdictFrame>();
  /** Bytes of each entry actually sent; the hash of each as sent here; the length of a stream. */
  private readonly sentBytes = new Map<number, number>();
  private readonly localDigests = new Map<number, Buffer>();
  private readonly streamSizes = new Map<number, number>();
  private readonly chunkSize: number;
  /** Bytes per second (0: no cap), and what the throttle has let through since it started. */
  private readonly rateLimit: number;
  private throttled = 0;
  private throttleStart: number | null = null;
  private info: TransferInfo | null = null;
  /** Entries sent whose verdict has not come yet. */
  private readonly awaiting = new Set<number>();
  private wakeSender: (() => void) | null = null;
  private stopped: SockxferError | null = null;
  private finished: Promise<void> = Promise.resolve();
  private done = 0;

  constructor(
    private readonly transport: Transport,
    private readonly sources: Source[],
    private readonly options: SendOptions,
    private readonly observer: SendObserver,
  ) {
    this.chunkSize = Math.min(options.chunkSize, transport.maxChunkSize);
    this.rateLimit = options.rateLimit ?? 0;
    this.entries = sources.map((s, index) => ({ index, kind: s.kind, name: s.name, size: s.size, mode: s.mode, mtimeMs: s.mtimeMs }));
  }

  async run(): Promise<TransferResult> {
    const { transport, options } = this;
    const key = options.key ?? null;
    const hello = { type: 'hello', minVersion: MIN_PROTOCOL_VERSION, maxVersion: MAX_PROTOCOL_VERSION, capabilities: key ? CAP_KEY : 0, software: SOFTWARE } as const;
    transport.send(hello);
    const welcome = await expectFrame(transport, 'welcome');
    if (welcome.version < MIN_PROTOCOL_VERSION || welcome.version > MAX_PROTOCOL_VERSION) {
      throw new SockxferError('E_VERSION', `${transport.remote} chose protocol version ${welcome.version}, which this sockxfer does not speak`);
    }
    await authenticateToReceiver(transport, key, hello, welcome);
    this.sendOffer();
    await this.readAccept();

    const total = this.entries.reduce((n, e) => n + e.size, 0);
    this.info = {
      session: transport.session.toString(16).padStart(16, '0'),
      name: transferName(this.entries.map((e) => e.name)),
      files: this.entries.filter((e) => e.kind !== 'directory').length,
      bytes: total,
      hash: options.hash,
      transport: transport.kind,
      peer: transport.remote,
      encrypted: transport.sealed,
    };
    const started = performance.now();
    this.observer.start?.(this.info);
    this.finished = this.readVerdicts();
    this.finished.catch(() => {}); // awaited below; a failure also stops the loop through `stopped`

    for (const entry of this.entries) {
      if (this.stopped) throw this.stopped;
      const accept = this.accepts.get(entry.index)!;
      // Refused entries and folders need nothing from us; their verdicts come anyway.
      if (accept.action === 'refuse' || entry.kind === 'directory') continue;
      while (this.awaiting.size >= MAX_UNANSWERED && !this.stopped) await new Promise<void>((resolve) => (this.wakeSender = resolve));
      if (this.stopped) throw this.stopped;
      this.awaiting.add(entry.index);
      await this.sendEntry(entry, accept);
    }
    await this.finished;
    if (this.stopped) throw this.stopped;
    const seconds = (performance.now() - started) / 1000;
    await transport.close();
    return this.result(seconds);
  }

  private result(seconds: number): TransferResult {
    const entries = this.entries.map((e) => this.results.get(e.index)!);
    const sentBytes = [...this.sentBytes.values()].reduce((a, b) => a + b, 0);
    const base = { ...this.info!, bytes: entries.reduce((n, e) => n + (e.kind === 'directory' ? 0 : e.bytes), 0), seconds, bytesPerSecond: 0, entries, committed: 0, upToDate: 0, failed: 0, stats: this.transport.stats() };
    return summarize(base, entries, sentBytes, seconds);
  }

  /** OFFER frames: as many entries per frame as fit a control frame. */
  private sendOffer(): void {
    const base = { type: 'offer', chunkSize: this.chunkSize, hash: this.options.hash, fileCount: this.entries.length, totalBytes: this.entries.reduce((n, e) => n + e.size, 0) } as const;
    const budget = MAX_CONTROL_BODY - 64;
    let batch: OfferEntry[] = [];
    let bytes = 19;
    for (const e of this.entries) {
      const size = 4 + 1 + 8 + 4 + 8 + 2 + Buffer.byteLength(e.name);
      if (batch.length > 0 && (batch.length >= MAX_OFFER_ENTRIES || bytes + size > budget)) {
        this.transport.send({ ...base, entries: batch, more: true });
        batch = [];
        bytes = 19;
      }
      batch.push(e);
      bytes += size;
    }
    this.transport.send({ ...base, entries: batch, more: false });
  }

  private async readAccept(): Promise<void> {
    const { transport } = this;
    for (;;) {
      const reply = await expectFrame(transport, 'accept', 'refuse');
      if (reply.type === 'refuse') throw peerError(reply, transport);
      for (const a of reply.entries) {
        if (a.index >= this.entries.length || this.accepts.has(a.index)) throw new SockxferError('E_PROTOCOL', `${transport.remote} answered entry ${a.index} of the offer twice or out of range`);
        this.accepts.set(a.index, a);
      }
      if (!reply.more) break;
    }
    if (this.accepts.size !== this.entries.length) throw new SockxferError('E_PROTOCOL', `${transport.remote} answered ${this.accepts.size} of ${this.entries.length} offered entries`);
  }

  /** Reads VERDICTs (and nothing else) until the one for the whole transfer. */
  private async readVerdicts(): Promise<void> {
    const { transport } = this;
    try {
      for (;;) {
        const v = await expectFrame(transport, 'verdict');
        if (v.index === WHOLE_TRANSFER) {
          if (v.status !== 'committed') throw peerError(v, transport);
          const missing = this.entries.find((e) => !this.results.has(e.index) && !this.verdicts.has(e.index));
          if (missing) throw new SockxferError('E_PROTOCOL', `${transport.remote} ended the transfer without a verdict for ${missing.name}`);
          return;
        }
        const entry = this.entries[v.index];
        if (!entry || this.verdicts.has(v.index)) throw new SockxferError('E_PROTOCOL', `${transport.remote} sent a verdict for entry ${v.index} twice or out of range`);
        this.verdicts.set(v.index, v);
        if (this.awaiting.delete(v.index)) {
          this.wakeSender?.();
          this.wakeSender = null;
        }
        this.onVerdict(entry, v);
      }
    } catch (err) {
      this.stopped ??= toSockxferError(err);
      // The receiver may have stopped reading: wake a send that waits for the socket to drain.
      this.transport.destroy(this.stopped);
      this.wakeSender?.();
      throw this.stopped;
    }
  }

  private onVerdict(entry: OfferEntry, v: VerdictFrame): void {
    const local = this.results.get(entry.index);
    if (local) return; // decided here already (the source changed): the receiver only confirms it dropped it
    const digest = this.localDigests.get(entry.index);
    const resumed = (this.accepts.get(entry.index)?.have.length ?? 0) > 0;
    if (v.status === 'failed') {
      const e = peerError(v, this.transport);
      // A resumed file whose partial data did not match starts over (see send()): not reported yet.
      const quiet = resumed && e.code === 'E_HASH_MISMATCH';
      this.record(entry, { result: 'failed', code: e.code, message: e.message, digest: v.digest.length > 0 ? v.digest.toString('hex') : null, resumed }, quiet);
      return;
    }
    if (entry.kind !== 'directory' && (digest === undefined || !v.digest.equals(digest))) {
      throw new SockxferError('E_HASH_MISMATCH', `${this.transport.remote} ${v.status === 'committed' ? 'committed' : 'holds'} ${entry.name} with hash ${v.digest.toString('hex')}, but it hashes to ${digest?.toString('hex') ?? '(not sent)'} here`);
    }
    this.record(entry, { result: v.status, digest: digest?.toString('hex') ?? null, path: v.path, ...(resumed ? { resumed } : {}) });
  }

  private record(entry: OfferEntry, outcome: Omit<EntryResult, 'index' | 'kind' | 'name' | 'bytes'> & { bytes?: number }, quiet = false): void {
    const result: EntryResult = {
      index: entry.index,
      kind: entry.kind,
      name: entry.name,
      bytes: outcome.bytes ?? (entry.kind === 'stream' ? (this.streamSizes.get(entry.index) ?? 0) : entry.size),
      ...outcome,
      sentBytes: this.sentBytes.get(entry.index) ?? 0,
    };
    this.results.set(entry.index, result);
    if (!quiet) this.observer.entry?.(this.info!, result);
  }

  private progress(bytes: number): void {
    this.done += bytes;
    this.observer.progress?.(this.info!, this.done);
  }

  // ---- One entry ---------------------------------------------------------------------------

  private async sendEntry(entry: OfferEntry, accept: AcceptEntry): Promise<void> {
    const source = this.sources[entry.index]!;
    if (entry.kind === 'stream') {
      await this.sendStream(entry, this.options.stdin!);
      return;
    }
    if (entry.size <= SMALL_FILE && accept.action === 'send' && accept.have.length === 0) {
      await this.sendSmall(entry, source.path!);
      return;
    }
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(source.path!, 'r');
    } catch (err) {
      this.abandon(entry, sourceError(err, source.path!));
      return;
    }
    try {
      const st = await handle.stat();
      if (!st.isFile() || st.size !== entry.size || Math.floor(st.mtimeMs) !== entry.mtimeMs) {
        this.abandon(entry, new SockxferError('E_SOURCE_CHANGED', `${source.path} changed between the offer and its turn to be sent`));
        return;
      }
      let digest: Buffer | null = null;
      let have = new RangeSet();
      if (accept.action === 'check' || accept.action === 'update') {
        // The receiver holds a file of this size: hash ours first; the same hash needs no data.
        digest = (await hashFile(source.path!, this.options.hash)).digest;
        if (digest.equals(accept.digest) || accept.action === 'check') {
          this.localDigests.set(entry.index, digest);
          this.sendEnd(entry, entry.size, digest);
          this.progress(entry.size);
          return;
        }
      } else {
        const held = RangeSet.fromRanges(accept.have, Math.ceil(entry.size / this.chunkSize));
        if (held === null) throw new SockxferError('E_PROTOCOL', `${this.transport.remote} offered held chunk ranges for ${entry.name} that are out of order or past its end`);
        have = held;
      }
      const hasher = await createHasher(this.options.hash);
      await this.streamChunks(entry, handle, hasher, have);
      const after = await handle.stat();
      if (after.size !== entry.size || Math.floor(after.mtimeMs) !== entry.mtimeMs) {
        this.abandon(entry, new SockxferError('E_SOURCE_CHANGED', `${source.path} changed while it was being sent`));
        return;
      }
      const sent = hasher.digest();
      if (digest !== null && !digest.equals(sent)) {
        this.abandon(entry, new SockxferError('E_SOURCE_CHANGED', `${source.path} changed while it was being sent`));
        return;
      }
      this.localDigests.set(entry.index, sent);
      this.sendEnd(entry, entry.size, sent);
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      if (this.stopped) throw this.stopped;
      if (e.code === 'E_SOURCE_CHANGED' || e.code === 'E_IO' || e.code === 'E_NOT_FOUND' || e.code === 'E_PERMISSION') {
        this.abandon(entry, e.code === 'E_SOURCE_CHANGED' ? e : sourceError(err, source.path!));
        return;
      }
      throw e;
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /**
   * A small file, read whole on the calling thread: open, fstat, read, fstat, close take
   * microseconds each, less than one trip through the thread pool, and a tree of thousands of
   * small files would otherwise wait for five trips per file, one file after the other.
   */
  private async sendSmall(entry: OfferEntry, file: string): Promise<void> {
    let bytes: Buffer;
    try {
      const fd = fsSync.openSync(file, 'r');
      try {
        const changed = (st: fsSync.Stats) => !st.isFile() || st.size !== entry.size || Math.floor(st.mtimeMs) !== entry.mtimeMs;
        if (changed(fsSync.fstatSync(fd))) throw new SockxferError('E_SOURCE_CHANGED', `${file} changed between the offer and its turn to be sent`);
        bytes = Buffer.allocUnsafe(entry.size);
        for (let got = 0; got < entry.size; ) {
          const n = fsSync.readSync(fd, bytes, got, entry.size - got, got);
          if (n === 0) throw new SockxferError('E_SOURCE_CHANGED', `${file} shrank while it was being sent`);
          got += n;
        }
        if (changed(fsSync.fstatSync(fd))) throw new SockxferError('E_SOURCE_CHANGED', `${file} changed while it was being sent`);
      } finally {
        fsSync.closeSync(fd);
      }
    } catch (err) {
      const e = err instanceof SockxferError ? err : sourceError(err, file);
      this.abandon(entry, e);
      return;
    }
    const hasher = await createHasher(this.options.hash);
    hasher.update(bytes);
    for (let off = 0, chunk = 0; off < bytes.length; off += this.chunkSize, chunk++) {
      if (this.stopped) throw this.stopped;
      const data = [bytes.subarray(off, off + this.chunkSize)];
      if (this.rateLimit > 0) await this.throttle(data[0]!.length);
      if (!this.transport.send({ type: 'data', index: entry.index, chunk, data })) await this.transport.drain();
    }
    this.sentBytes.set(entry.index, bytes.length);
    this.progress(bytes.length);
    const digest = hasher.digest();
    this.localDigests.set(entry.index, digest);
    this.sendEnd(entry, entry.size, digest);
  }

  private sendEnd(entry: OfferEntry, size: number, digest: Buffer, abandoned = false): void {
    this.transport.send({ type: 'end', index: entry.index, size, hash: this.options.hash, digest, abandoned });
  }

  /** Gives an entry up: the receiver drops what it has of it; the local outcome is `error`. */
  private abandon(entry: OfferEntry, error: SockxferError): void {
    this.sendEnd(entry, entry.size, Buffer.alloc(0), true);
    this.record(entry, { result: 'failed', code: error.code === 'E_NOT_FOUND' ? 'E_SOURCE_CHANGED' : error.code, message: error.code === 'E_NOT_FOUND' ? `${error.message} (it vanished after the offer)` : error.message, digest: null });
  }

  /** Reads the file in large blocks (one read ahead), hashes all of it, and sends the chunks not in `have`. */
  private async streamChunks(entry: OfferEntry, handle: fs.FileHandle, hasher: Hasher, have: RangeSet): Promise<void> {
    const { transport, chunkSize } = this;
    const size = entry.size;
    const blockSize = Math.max(chunkSize, Math.floor(READ_BLOCK / chunkSize) * chunkSize);
    const pool = new BlockPool(blockSize, 8);
    const readBlock = async (at: number): Promise<{ buf: Buffer; block: Buffer }> => {
      const length = Math.min(blockSize, size - at);
      const block = pool.get();
      const buf = block.subarray(0, length);
      for (let got = 0; got < length; ) {
        const { bytesRead } = await handle.read(buf, got, length - got, at + got);
        if (bytesRead === 0) throw new SockxferError('E_SOURCE_CHANGED', `${entry.name} shrank while it was being sent (expected ${size} bytes)`);
        got += bytesRead;
      }
      return { buf, block };
    };
    let next = size > 0 ? readBlock(0) : null;
    let sent = 0;
    for (let pos = 0; pos < size; ) {
      const { buf, block } = await next!;
      const end = pos + buf.length;
      next = end < size ? readBlock(end) : null;
      next?.catch(() => {}); // awaited on the next turn; this only keeps an early failure from being "unhandled"
      hasher.update(buf);
      let unreleased = 1;
      const release = () => {
        if (--unreleased === 0) pool.put(block);
      };
      for (let off = 0; off < buf.length; off += chunkSize) {
        if (this.stopped) throw this.stopped;
        const chunk = (pos + off) / chunkSize;
        if (have.has(chunk)) continue;
        const data = [buf.subarray(off, off + chunkSize)];
        unreleased++;
        sent += data[0]!.length;
        if (this.rateLimit > 0) await this.throttle(data[0]!.length);
        if (!transport.send({ type: 'data', index: entry.index, chunk, data }, release)) await transport.drain();
      }
      release();
      this.progress(buf.length);
      pos = end;
    }
    this.sentBytes.set(entry.index, sent);
  }

  /** Under a rate limit (callers check rateLimit > 0 first): waits until `bytes` more keep the average since the start under it. */
  private async throttle(bytes: number): Promise<void> {
    this.throttled += bytes;
    this.throttleStart ??= performance.now();
    const due = this.throttleStart + (this.throttled / this.rateLimit) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
  }

  /** Sends standard input (of unknown length) in chunks as it comes; END carries its length. */
  private async sendStream(entry: OfferEntry, input: NodeJS.ReadableStream): Promise<void> {
    const { transport, chunkSize } = this;
    const hasher = await createHasher(this.options.hash);
    let pending = Buffer.allocUnsafe(chunkSize);
    let filled = 0;
    let chunk = 0;
    let size = 0;
    const flush = async () => {
      const data = [pending.subarray(0, filled)];
      hasher.update(data[0]!);
      size += filled;
      if (this.rateLimit > 0) await this.throttle(filled);
      const ok = transport.send({ type: 'data', index: entry.index, chunk: chunk++, data });
      pending = Buffer.allocUnsafe(chunkSize);
      filled = 0;
      this.progress(data[0]!.length);
      if (!ok) await transport.drain();
    };
    try {
      for await (const piece of input as AsyncIterable<Buffer | string>) {
        let buf = typeof piece === 'string' ? Buffer.from(piece) : piece;
        while (buf.length > 0) {
          if (this.stopped) throw this.stopped;
          const n = Math.min(buf.length, chunkSize - filled);
          buf.copy(pending, filled, 0, n);
          filled += n;
          buf = buf.subarray(n);
          if (filled === chunkSize) await flush();
        }
      }
    } catch (err) {
      if (this.stopped) throw this.stopped;
      this.abandon(entry, new SockxferError('E_IO', `cannot read standard input: ${(err as Error).message}`, { cause: err }));
      return;
    }
    if (filled > 0) await flush();
    this.sentBytes.set(entry.index, size);
    const digest = hasher.digest();
    this.localDigests.set(entry.index, digest);
    this.streamSizes.set(entry.index, size);
    this.sendEnd(entry, size, digest);
  }
}

/**
 * Read blocks, reused once every chunk cut from them has left the transport: allocating a fresh
 * 4 MiB buffer per read costs page faults and munmap calls that more than double the CPU time.
 */
class BlockPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly blockSize: number,
    private readonly keep: number,
  ) {}

  get(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
  }

  put(block: Buffer): void {
    if (this.free.length < this.keep) this.free.push(block);
  }
}
