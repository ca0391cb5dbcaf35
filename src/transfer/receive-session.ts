/**
 * The receiving side of one transfer, from HELLO to the last VERDICT. Each file lands in a
 * temporary file beside its target; only a file whose every chunk and whole-file hash checked is
 * moved to its final name. Files are finished in parallel (fsync, move, a shared folder fsync)
 * while later ones still arrive, so many small files cost neither a round trip nor a serial
 * fsync each. Any failure removes the temporary files of what was not committed.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SockxferError, codeFromWire, toSockxferError } from '../errors.js';
import {
  CAP_KEY,
  MAX_ACCEPT_RANGES,
  MAX_CHUNK_SIZE,
  MAX_CONTROL_BODY,
  MAX_ENTRY_MESSAGE_BYTES,
  MAX_OFFER_ENTRIES,
  MAX_PROTOCOL_VERSION,
  MIN_CHUNK_SIZE,
  MIN_PROTOCOL_VERSION,
  WHOLE_TRANSFER,
  dataLength,
  fitMessage,
  type AcceptEntry,
  type DataFrame,
  type EndFrame,
  type OfferEntry,
  type OfferFrame,
  type VerdictStatus,
} from '../protocol/index.js';
import type { Transport } from '../transport/index.js';
import { transferName, type EntryResult, type TransferInfo, type TransferObserver, type TransferResult } from './events.js';
import { createHasher, hashFile } from './hash.js';
import { pathProblem, printableName, shownName } from './names.js';
import { OrderedHasher } from './ordered-hasher.js';
import { OrderedSink } from './ordered-sink.js';
import { PartFile, UMASK, fsyncFile } from './part-file.js';
import { authenticateSender, type AuthThrottle } from './auth.js';
import { expectFrame, peerError } from './peer.js';
import { RangeSet } from './range-set.js';
import { DirectorySyncer, FilesystemSyncer, checkParents, ensureDirectorySync, ensureParentsSync, type OverwritePolicy } from './target.js';
import { JOURNAL_SUFFIX, PARTIAL_DIR, partialPaths, readJournal, removePartial, resumeKey, writeJournal } from './journal.js';
import { SOFTWARE } from './version.js';

export interface ReceiveOptions {
  /** The folder files are committed to (absolute, existing). */
  dir: string;
  /** What to do with a file that exists already (an identical one is up to date whatever the policy). */
  policy: OverwritePolicy;
  /** Handshake timeout, and the longest a transfer may go without progress. */
  timeoutMs: number;
  /** Largest file or stream accepted, in bytes (Infinity: no limit). */
  maxSize?: number;
  /** Most entries (files, streams and folders) in one transfer. */
  maxFiles?: number;
  /** Shared among the sessions of a receiver, so that commits into one folder share its fsyncs. */
  syncer?: DirectorySyncer;
  /** Resume keys in use by the receiver's sessions (shared): a file in progress in one is not resumed by another. */
  resumeLocks?: Set<string>;
  /** Write the one file (or stream) of the transfer here, in order, instead of into `dir`. */
  sink?: NodeJS.WritableStream;
  /** When available: small files are made durable by shared syncfs calls instead of an fsync each. */
  fsSyncer?: FilesystemSyncer;
  /** Sessions using the partial folder (shared): the last one out removes it when it is empty. */
  partialUsers?: { count: number };
  /** The pre-shared key: senders must prove they hold it, and everything is encrypted (protocol/secure.ts). */
  key?: Buffer | null;
  /** Failed key handshakes per address (shared by the receiver's sessions). */
  authThrottle?: AuthThrottle;
}

export const DEFAULT_MAX_FILES = 1_000_000;

export interface SessionObserver extends TransferObserver {
  /**
   * The peer said HELLO and (with a key) proved it holds the key: from here on this is a
   * sockxfer transfer, not a stray connection.
   */
  hello?(peer: string): void;
  /** The receiver is about to hold its answer back `ms` (the key brake): deadlines must allow for it. */
  brake?(ms: number): void;
}

/** Bytes between progress reports. */
const PROGRESS_STEP = 256 * 1024;
/**
 * Files being finished (fsync, move) at once per transfer; more wait. Many: small files wait
 * together for one shared syncfs, and each batch is at most this large.
 */
const MAX_FINISHING = 1024;
/** Files started and not yet committed; an honest sender has at most MAX_UNANSWERED (sender.ts), half of this. */
const MAX_OPEN = 2048;
/** Files up to this size are written on the calling thread: one small write costs less than a trip through the thread pool. */
const SMALL_FILE = 256 * 1024;
/** Existing files hashed at once to decide whether they are up to date. */
const HASH_PARALLEL = 4;

/** An error the receiver answers with REFUSE (before any data) rather than ERROR. */
class Refusal extends SockxferError {}

/** What the receiver decided for one entry. */
interface Plan {
  entry: OfferEntry;
  accept: AcceptEntry;
  /** Absolute path of the entry's target. */
  target: string;
  /** Why it was refused (accept.action is 'refuse'). */
  refused: SockxferError | null;
  /** The digest of the file in place (check and update). */
  existing: Buffer | null;
  /** Resumable: the key of its partial data (held by this session), and the durable byte ranges found. */
  key: string | null;
  held: Array<[number, number]>;
  /** A journal exists (or existed) for the key: remove it when done. */
  journaled: boolean;
}

/** A file or stream the receiver expects data or an END for. */
interface Incoming {
  plan: Plan;
  part: PartFile | null;
  hasher: OrderedHasher | null;
  have: RangeSet;
  end: EndFrame | null;
  /** A stream's one chunk shorter than the chunk size (its last), and its length. */
  shortChunk: number;
  shortLength: number;
  /** The entry failed locally (a write error); its data is dropped until its END. */
  failure: SockxferError | null;
  done: boolean;
  /** Continues partial data: hashed from disk at the end rather than as it streams. */
  resumed: boolean;
}

/** Serves one sender on `transport`; resolves with what happened to every entry, rejects when the transfer as a whole failed. */
export async function receiveSession(transport: Transport, options: ReceiveOptions, observer: SessionObserver = {}): Promise<TransferResult> {
  transport.setIdleTimeout(options.timeoutMs);
  return new IncomingTransfer(transport, options, observer).run();
}

class IncomingTransfer {
  private offer: OfferFrame | null = null;
  private plans: Plan[] = [];
  private readonly incoming = new Map<number, Incoming>();
  private readonly results = new Map<number, EntryResult>();
  private readonly finishing = new Set<Promise<void>>();
  private readonly syncer: DirectorySyncer;
  private info: TransferInfo | null = null;
  private open = 0;
  private received = 0;
  private reported = 0;
  private readonly locks: Set<string>;
  /** --stdout: where the one entry goes. */
  private sink: OrderedSink | null = null;
  private readonly partialUsers: { count: number };
  /** Folders this session created, in order. */
  private readonly createdDirs: string[] = [];
  private usesPartial = false;
  /** Resume keys this session holds. */
  private readonly keys: string[] = [];

  constructor(
    private readonly transport: Transport,
    private readonly options: ReceiveOptions,
    private readonly observer: SessionObserver,
  ) {
    this.syncer = options.syncer ?? new DirectorySyncer();
    this.locks = options.resumeLocks ?? new Set();
    this.partialUsers = options.partialUsers ?? { count: 0 };
  }

  async run(): Promise<TransferResult> {
    const { transport } = this;
    let answered = false;
    try {
      await this.handshake();
      const offer = await this.readOffer();
      this.offer = offer;
      if (this.options.sink) {
        const kinds = offer.entries.map((e) => e.kind);
        if (kinds.length !== 1 || kinds[0] === 'directory') throw new Refusal('E_UNSUPPORTED', `this receiver writes one file to standard output; the offer has ${offer.entries.length} entries${kinds.includes('directory') ? ', folders among them' : ''}`);
        this.sink = new OrderedSink(this.options.sink);
      }
      if (!this.sink) {
        try {
          ensureDirectorySync(path.join(this.options.dir, PARTIAL_DIR), PARTIAL_DIR);
        } catch (err) {
          throw new Refusal(toSockxferError(err, 'E_IO').code, `cannot use ${PARTIAL_DIR} in the target folder: ${(err as Error).message}`);
        }
        this.partialUsers.count++;
        this.usesPartial = true;
      }
      this.plans = this.sink ? [this.sinkPlan(offer.entries[0]!)] : await this.plan(offer);
      await this.checkSpace();
      this.sendAccept();
      this.info = {
        session: transport.session.toString(16).padStart(16, '0'),
        name: transferName(offer.entries.map((e) => e.name)),
        files: offer.entries.filter((e) => e.kind !== 'directory').length,
        bytes: offer.totalBytes,
        hash: offer.hash,
        transport: transport.kind,
        peer: transport.remote,
        encrypted: transport.sealed,
      };
      const started = performance.now();
      this.observer.start?.(this.info);
      for (const plan of this.plans) if (plan.refused) this.settle(plan, 'failed', null, plan.refused);
      await this.receiveAll();
      await Promise.all(this.finishing);
      await this.finishDirectories();
      this.leavePartialDir();
      answered = true;
      sendQuietly(transport, () => transport.send({ type: 'verdict', index: WHOLE_TRANSFER, status: 'committed', code: 0, hash: offer.hash, digest: Buffer.alloc(0), message: 'done', path: '' }));
      const seconds = (performance.now() - started) / 1000;
      await transport.close();
      return this.result(seconds);
    } catch (err) {
      const e = toSockxferError(err);
      await this.discardAll();
      if (e instanceof Refusal) {
        // Refused as a whole: the folders planning made go again (deepest first, if still empty).
        for (const dir of this.createdDirs.reverse()) {
          try {
            fsSync.rmdirSync(dir);
          } catch {
            // not empty, or gone
          }
        }
        sendQuietly(transport, () => transport.send({ type: 'refuse', code: e.wireCode, index: WHOLE_TRANSFER, message: e.message }));
        await transport.close();
        throw new SockxferError(e.code, e.message);
      }
      if (answered) {
        await transport.close();
      } else if (!e.remote) {
        await transport.abort(e);
      } else {
        transport.destroy(e);
      }
      throw e;
    } finally {
      this.leavePartialDir();
      this.unlock();
    }
  }

  /** The last session out removes the partial folder, unless it holds partial data to resume. */
  private leavePartialDir(): void {
    if (!this.usesPartial) return;
    this.usesPartial = false;
    if (--this.partialUsers.count > 0) return;
    try {
      fsSync.rmdirSync(path.join(this.options.dir, PARTIAL_DIR));
    } catch {
      // not empty (partial data kept for a resume), or gone already
    }
  }

  private result(seconds: number): TransferResult {
    const entries = this.plans.map((p) => this.results.get(p.entry.index)!);
    const count = (r: EntryResult['result']) => entries.filter((e) => e.kind !== 'directory' && e.result === r).length;
    const failed = entries.find((e) => e.result === 'failed');
    const bytes = entries.reduce((n, e) => n + (e.kind === 'directory' ? 0 : e.bytes), 0);
    const only = entries.length === 1 ? entries[0]! : null;
    return {
      ...this.info!,
      bytes,
      seconds,
      bytesPerSecond: seconds > 0 ? this.received / seconds : 0,
      entries,
      committed: count('committed'),
      upToDate: count('up-to-date'),
      failed: entries.filter((e) => e.result === 'failed').length,
      ...(failed ? { firstFailure: { code: failed.code!, message: failed.message ?? '', name: failed.name } } : {}),
      ...(only?.digest ? { digest: only.digest } : {}),
      ...(only?.path ? { path: only.path } : {}),
      stats: this.transport.stats(),
    };
  }

  // ---- Before the data -------------------------------------------------------------------

  private async handshake(): Promise<void> {
    const { transport } = this;
    const hello = await expectFrame(transport, 'hello');
    const key = this.options.key ?? null;
    if (key === null) {
      // Without a key, a HELLO makes this a sockxfer transfer, even one that fails on the version just below.
      this.observer.hello?.(transport.remote);
    } else if ((hello.capabilities & CAP_KEY) === 0) {
      throw new SockxferError('E_AUTH', `${transport.remote} has no key; this receiver takes only senders with its key (--key-file or SOCKXFER_KEY)`);
    }
    const version = Math.min(hello.maxVersion, MAX_PROTOCOL_VERSION);
    if (version < Math.max(hello.minVersion, MIN_PROTOCOL_VERSION)) {
      throw new SockxferError(
        'E_VERSION',
        `${transport.remote} (${printableName(hello.software)}) speaks protocol versions ${hello.minVersion}-${hello.maxVersion}; this receiver speaks ${MIN_PROTOCOL_VERSION}-${MAX_PROTOCOL_VERSION}`,
      );
    }
    const welcome = { type: 'welcome', version, capabilities: key === null ? 0 : CAP_KEY, software: SOFTWARE } as const;
    transport.send(welcome);
    await authenticateSender(transport, key, hello, welcome, this.options.authThrottle ?? null, (ms) => this.observer.brake?.(ms));
    // With a key, only a sender that proved it holds it counts as a transfer.
    if (key !== null) this.observer.hello?.(transport.remote);
  }

  /** Collects the OFFER frames of a transfer (one, or several flagged "more"). */
  private async readOffer(): Promise<OfferFrame> {
    const { transport } = this;
    const first = await expectFrame(transport, 'offer');
    const maxFiles = this.options.maxFiles ?? DEFAULT_MAX_FILES;
    // Refused before any continuation frame is read, so a huge file count cannot grow the list.
    if (first.fileCount > maxFiles) throw new Refusal('E_LIMIT', `the offer has ${first.fileCount} entries; this receiver takes at most ${maxFiles} per transfer`);
    const entries: OfferEntry[] = [];
    for (let frame = first; ; frame = await expectFrame(transport, 'offer')) {
      if (frame.chunkSize !== first.chunkSize || frame.hash !== first.hash || frame.fileCount !== first.fileCount || frame.totalBytes !== first.totalBytes) {
        throw new SockxferError('E_PROTOCOL', 'OFFER frames of one transfer disagree');
      }
      if (entries.length + frame.entries.length > first.fileCount) throw new SockxferError('E_PROTOCOL', 'more offer entries than the entry count');
      for (const e of frame.entries) {
        if (e.index !== entries.length) throw new SockxferError('E_PROTOCOL', `offer entry has index ${e.index}, expected ${entries.length}`);
        entries.push(e);
      }
      if (!frame.more) break;
    }
    if (entries.length !== first.fileCount) throw new SockxferError('E_PROTOCOL', `offer lists ${entries.length} entries but counts ${first.fileCount}`);
    let total = 0;
    for (const e of entries) {
      if (e.kind !== 'file' && e.size !== 0) throw new SockxferError('E_PROTOCOL', `offer entry ${e.index} is a ${e.kind} with a size`);
      total += e.size;
    }
    if (total !== first.totalBytes) throw new SockxferError('E_PROTOCOL', `offer total ${first.totalBytes} bytes does not match the sum of its sizes, ${total}`);
    const chunkLimit = Math.min(MAX_CHUNK_SIZE, transport.maxChunkSize);
    if (first.chunkSize < MIN_CHUNK_SIZE || first.chunkSize > chunkLimit) {
      throw new Refusal('E_UNSUPPORTED', `chunk size ${first.chunkSize} is outside ${MIN_CHUNK_SIZE}-${chunkLimit}`);
    }
    return { ...first, entries, more: false };
  }

  /** The one entry of a transfer to standard output: sent in full, never resumed. */
  private sinkPlan(entry: OfferEntry): Plan {
    const plan: Plan = { entry, accept: { index: entry.index, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] }, target: '', refused: null, existing: null, key: null, held: [], journaled: false };
    const maxSize = this.options.maxSize ?? Infinity;
    if (entry.kind === 'file' && entry.size > maxSize) {
      plan.refused = new SockxferError('E_LIMIT', `over the size limit: ${entry.size} bytes, this receiver takes files of at most ${maxSize} bytes: "${shownName(entry.name)}"`);
      plan.accept = { ...plan.accept, action: 'refuse', code: plan.refused.wireCode, message: fitMessage(plan.refused.message, MAX_ENTRY_MESSAGE_BYTES) };
    }
    return plan;
  }

  /** Decides what to do with every entry: folders are created, existing files hashed, bad names refused. */
  private async plan(offer: OfferFrame): Promise<Plan[]> {
    const root = this.options.dir;
    const kinds = new Map<string, OfferEntry['kind']>();
    const refusedPaths = new Map<string, SockxferError>();
    const plans: Plan[] = [];
    const hashing: Array<() => Promise<void>> = [];
    // Folders known to be real folders, and the keys that have a journal: looked up once.
    const knownDirs = new Set<string>();
    const journals = new Set(
      (await fs.readdir(path.join(root, PARTIAL_DIR)).catch(() => [] as string[])).filter((n) => n.endsWith(JOURNAL_SUFFIX)).map((n) => n.slice(0, -JOURNAL_SUFFIX.length)),
    );
    for (const entry of offer.entries) {
      const plan: Plan = { entry, accept: { index: entry.index, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] }, target: '', refused: null, existing: null, key: null, held: [], journaled: false };
      plans.push(plan);
      const refuse = (e: SockxferError) => {
        plan.refused = e;
        plan.accept = { ...plan.accept, action: 'refuse', code: e.wireCode, message: fitMessage(e.message, MAX_ENTRY_MESSAGE_BYTES) };
        refusedPaths.set(entry.name, e);
      };
      const problem = pathProblem(entry.name);
      if (problem) {
        refuse(new SockxferError('E_BAD_NAME', `refused a name: ${problem}: "${shownName(entry.name)}"`));
        continue;
      }
      if (entry.name.split('/')[0] === PARTIAL_DIR) {
        refuse(new SockxferError('E_BAD_NAME', `refused a name: ${PARTIAL_DIR} is where this receiver keeps files in progress: "${shownName(entry.name)}"`));
        continue;
      }
      if (kinds.has(entry.name)) {
        refuse(new SockxferError('E_BAD_NAME', `offered twice: "${shownName(entry.name)}"`));
        continue;
      }
      const conflict = this.parentConflict(entry.name, kinds, refusedPaths);
      kinds.set(entry.name, entry.kind);
      if (conflict) {
        refuse(conflict);
        continue;
      }
      const maxSize = this.options.maxSize ?? Infinity;
      if (entry.kind === 'file' && entry.size > maxSize) {
        refuse(new SockxferError('E_LIMIT', `over the size limit: ${entry.size} bytes, this receiver takes files of at most ${maxSize} bytes: "${shownName(entry.name)}"`));
        continue;
      }
      plan.target = path.join(root, ...entry.name.split('/'));
      try {
        ensureParentsSync(root, entry.name, knownDirs, this.createdDirs);
        if (entry.kind === 'directory') {
          if (ensureDirectorySync(plan.target, entry.name)) this.createdDirs.push(plan.target);
          knownDirs.add(plan.target);
          continue;
        }
        const existing = fsSync.lstatSync(plan.target, { throwIfNoEntry: false }) ?? null;
        if (existing === null) {
          if (entry.kind === 'file' && entry.size > 0) await this.planResume(plan, offer, journals);
          continue;
        }
        const shown = printableName(entry.name);
        if (existing.isDirectory()) throw new SockxferError('E_EXISTS', `${shown} exists in the target folder and is a folder`);
        const policy = this.options.policy;
        if (existing.isFile() && entry.kind === 'file' && existing.size === entry.size) {
          // Same size: the hashes decide (identical is up to date whatever the policy).
          plan.accept = { ...plan.accept, action: policy === 'refuse' ? 'check' : 'update', code: policy === 'refuse' ? existsError(shown).wireCode : 0 };
          hashing.push(async () => {
            const { digest } = await hashFile(plan.target, offer.hash);
            plan.existing = digest;
            plan.accept = { ...plan.accept, digest };
          });
          continue;
        }
        if (policy === 'refuse') throw existing.isFile() ? existsError(shown) : new SockxferError('E_EXISTS', `${shown} exists in the target folder and is not a regular file`);
      } catch (err) {
        refuse(toSockxferError(err, 'E_IO'));
      }
    }
    // Existing files are hashed a few at a time; one that cannot be read is refused.
    for (let i = 0; i < hashing.length; i += HASH_PARALLEL) {
      await Promise.all(hashing.slice(i, i + HASH_PARALLEL).map((h) => h()));
    }
    for (const plan of plans) {
      if ((plan.accept.action === 'check' || plan.accept.action === 'update') && plan.existing === null) {
        plan.refused = new SockxferError('E_IO', `cannot read ${printableName(plan.entry.name)} in the target folder`);
        plan.accept = { ...plan.accept, action: 'refuse', code: plan.refused.wireCode, message: fitMessage(plan.refused.message, MAX_ENTRY_MESSAGE_BYTES), digest: Buffer.alloc(0) };
      }
    }
    return plans;
  }

  /**
   * A new file can be resumed: take its key (unless another session holds it) and look for a
   * journal of earlier partial data; offer back the chunks it holds whole.
   */
  private async planResume(plan: Plan, offer: OfferFrame, journals: ReadonlySet<string>): Promise<void> {
    const locks = this.locks;
    const key = resumeKey(plan.entry, offer.hash);
    if (locks.has(key)) return;
    locks.add(key);
    this.keys.push(key);
    plan.key = key;
    if (!journals.has(key)) return;
    plan.journaled = true;
    const journal = await readJournal(this.options.dir, key, plan.entry, offer.hash);
    if (!journal) return;
    plan.held = journal.ranges;
    plan.accept = { ...plan.accept, have: heldChunks(journal.ranges, plan.entry.size, offer.chunkSize) };
  }

  /** Why an entry cannot go where it says: a folder on its way is an offered file, or was refused. */
  private parentConflict(name: string, kinds: Map<string, OfferEntry['kind']>, refused: Map<string, SockxferError>): SockxferError | null {
    for (let at = name.indexOf('/'); at !== -1; at = name.indexOf('/', at + 1)) {
      const parent = name.slice(0, at);
      const kind = kinds.get(parent);
      if (kind !== undefined && kind !== 'directory') {
        return new SockxferError('E_BAD_NAME', `inside an offered ${kind}: "${shownName(name)}" would be inside "${shownName(parent)}"`);
      }
      const e = refused.get(parent);
      if (e) return new SockxferError(e.code, `inside a refused folder: "${shownName(name)}" is inside "${shownName(parent)}"`);
    }
    return null;
  }

  /** Refuses the whole offer when the files to be written do not fit the target folder's free space. */
  private async checkSpace(): Promise<void> {
    let needed = 0;
    for (const p of this.plans) {
      if ((p.accept.action === 'send' || p.accept.action === 'update') && p.entry.kind === 'file') needed += p.entry.size - p.held.reduce((n, [a, b]) => n + b - a, 0);
    }
    if (needed === 0) return;
    const st = await fs.statfs(this.options.dir).catch(() => null);
    if (st === null) return;
    const free = st.bavail * st.bsize;
    if (needed > free) {
      throw new Refusal('E_NO_ROOM', `the offer needs ${needed} bytes, but the target folder has ${free} bytes free`);
    }
  }

  /** ACCEPT frames: as many entries per frame as fit a control frame. */
  private sendAccept(): void {
    const budget = MAX_CONTROL_BODY - 64;
    let batch: AcceptEntry[] = [];
    let bytes = 2;
    const flush = (more: boolean) => {
      this.transport.send({ type: 'accept', entries: batch, more });
      batch = [];
      bytes = 2;
    };
    for (const plan of this.plans) {
      const a = plan.accept;
      const size = 4 + 1 + 2 + 2 + Buffer.byteLength(a.message) + 1 + a.digest.length + 2 + 16 * Math.min(a.have.length, MAX_ACCEPT_RANGES);
      if (batch.length > 0 && (batch.length >= MAX_OFFER_ENTRIES || bytes + size > budget)) flush(true);
      batch.push(a);
      bytes += size;
      if (a.action !== 'refuse' && plan.entry.kind !== 'directory') {
        // heldChunks made these ranges: in order, apart, within the file.
        const have = RangeSet.fromRanges(a.have, Number.MAX_SAFE_INTEGER)!;
        this.incoming.set(a.index, { plan, part: null, hasher: null, have, end: null, shortChunk: -1, shortLength: 0, failure: null, done: false, resumed: a.have.length > 0 });
      }
    }
    flush(false);
  }

  // ---- The data ----------------------------------------------------------------------------

  private async receiveAll(): Promise<void> {
    const { transport } = this;
    let unfinished = this.incoming.size;
    const finished = () => unfinished--;
    while (unfinished > 0) {
      const frame = transport.tryReceive() ?? (await transport.receive());
      if (frame.type === 'data') {
        // Synchronous for most chunks: an await per UDP datagram costs more than the rest of its handling.
        const pending = this.onData(frame, finished);
        if (pending !== undefined) await pending;
      } else if (frame.type === 'end') {
        await this.onEnd(frame, finished);
      } else if (frame.type === 'error') {
        throw peerError(frame, transport);
      } else {
        throw new SockxferError('E_PROTOCOL', `unexpected ${frame.type} frame during the data`);
      }
      if (this.finishing.size >= MAX_FINISHING) await Promise.race(this.finishing);
    }
  }

  private expect(index: number, what: string): Incoming {
    const inc = this.incoming.get(index);
    if (!inc) throw new SockxferError('E_PROTOCOL', `${what} for entry ${index}, which was not asked for`);
    if (inc.done) throw new SockxferError('E_PROTOCOL', `${what} for entry ${index}, which is complete`);
    return inc;
  }

  /** Checks and stores one chunk; returns a promise only when the caller must wait (a first chunk, a full write queue, standard output). */
  private onData(frame: DataFrame, finished: () => void): Promise<void> | undefined {
    const inc = this.expect(frame.index, 'data');
    const { entry, accept } = inc.plan;
    if (accept.action === 'check') throw new SockxferError('E_PROTOCOL', `data for entry ${frame.index}, which was only to be checked`);
    const { chunkSize } = this.offer!;
    const length = dataLength(frame);
    if (entry.kind === 'file') {
      const count = Math.ceil(entry.size / chunkSize);
      if (frame.chunk >= count) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} is past the end of entry ${frame.index} (${count} chunks)`);
      const expected = frame.chunk === count - 1 ? entry.size - (count - 1) * chunkSize : chunkSize;
      if (length !== expected) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} has ${length} bytes, expected ${expected}`);
    } else {
      this.checkStreamChunk(inc, frame.chunk, length);
    }
    if (!inc.have.add(frame.chunk)) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} of entry ${frame.index} arrived twice`);
    if (inc.hasher === null && (this.sink || (inc.failure === null && !inc.resumed))) {
      return createHasher(this.offer!.hash).then(
        (hasher) => {
          inc.hasher = new OrderedHasher(hasher);
          return this.store(inc, frame, length, finished);
        },
        (err) => {
          if (this.sink) throw err;
          this.failed(inc, err, length, finished);
        },
      );
    }
    return this.store(inc, frame, length, finished);
  }

  /** onData's second half, once the entry has its hasher. */
  private store(inc: Incoming, frame: DataFrame, length: number, finished: () => void): Promise<void> | undefined {
    const { entry } = inc.plan;
    const { chunkSize } = this.offer!;
    if (this.sink) {
      inc.hasher!.add(frame.chunk, frame.data, length);
      // Standard output cannot be rewritten later: a failure to write it ends the transfer.
      return this.sink.add(frame.chunk, frame.data, length).then(() => this.counted(inc, length, finished));
    }
    // A lent chunk (frame.release) goes back once written: the hasher copies what it holds on to,
    // the part file calls release after its pwritev. (Standard output may hold it: never released.)
    if (inc.failure === null) {
      try {
        if (inc.part === null) this.opened(inc);
        if (!inc.resumed) inc.hasher!.add(frame.chunk, frame.data, length);
        if (entry.kind === 'file' && entry.size <= SMALL_FILE && !inc.resumed) {
          inc.part!.writeSync(frame.chunk * chunkSize, frame.data, length);
          frame.release?.();
        } else {
          const wait = inc.part!.write(frame.chunk * chunkSize, frame.data, length, frame.release);
          if (wait) return wait.then(() => this.counted(inc, length, finished), (err) => this.failed(inc, err, length, finished));
        }
      } catch (err) {
        this.failed(inc, err, length, finished);
        return undefined;
      }
    } else {
      frame.release?.();
    }
    this.counted(inc, length, finished);
    return undefined;
  }

  /** A write failed: the entry fails (reported at its END), the transfer goes on; a protocol error ends it. */
  private failed(inc: Incoming, err: unknown, length: number, finished: () => void): void {
    const e = toSockxferError(err, 'E_IO');
    if (e.code === 'E_PROTOCOL') throw e;
    inc.failure = e;
    this.counted(inc, length, finished);
  }

  /** A chunk is stored (or dropped with its entry's failure): progress, and the entry's end when it was the last. */
  private counted(inc: Incoming, length: number, finished: () => void): void {
    this.received += length;
    if (this.received - this.reported >= PROGRESS_STEP) {
      this.reported = this.received;
      this.observer.progress?.(this.info!, this.received);
    }
    if (inc.end && this.complete(inc)) this.finish(inc, finished);
  }

  /** Counts an entry as open (its part file created); too many at once is a protocol error. */
  private opened(inc: Incoming): void {
    if (++this.open > MAX_OPEN) throw new SockxferError('E_PROTOCOL', `data for more than ${MAX_OPEN} files at once`);
    const { entry, key, held } = inc.plan;
    const root = this.options.dir;
    if (key === null) {
      inc.part = PartFile.createSync(path.join(root, PARTIAL_DIR), path.basename(entry.name));
      return;
    }
    const hash = this.offer!.hash;
    const onDurable = (ranges: Array<[number, number]>) => {
      inc.plan.journaled = true;
      return writeJournal(root, key, { v: 1, name: entry.name, size: entry.size, mtimeMs: entry.mtimeMs, hash, ranges });
    };
    const { part } = partialPaths(root, key);
    if (inc.resumed) {
      inc.part = PartFile.resume(part, held, onDurable);
    } else {
      inc.part = PartFile.createAtSync(part);
      inc.part.trackDurable(onDurable);
    }
  }

  private checkStreamChunk(inc: Incoming, chunk: number, length: number): void {
    const { chunkSize } = this.offer!;
    const maxSize = Math.min(this.options.maxSize ?? Infinity, Number.MAX_SAFE_INTEGER);
    if (length === 0 || length > chunkSize) throw new SockxferError('E_PROTOCOL', `stream chunk ${chunk} has ${length} bytes (chunk size ${chunkSize})`);
    if (chunk * chunkSize + length > maxSize) {
      throw new SockxferError('E_LIMIT', `${printableName(inc.plan.entry.name)} grew past ${maxSize} bytes, the largest this receiver takes`);
    }
    if (length < chunkSize) {
      if (inc.shortChunk !== -1 && inc.shortChunk !== chunk) throw new SockxferError('E_PROTOCOL', `stream chunks ${inc.shortChunk} and ${chunk} are both short`);
      if (inc.have.end > chunk + 1) throw new SockxferError('E_PROTOCOL', `short stream chunk ${chunk} is not the last`);
      inc.shortChunk = chunk;
      inc.shortLength = length;
    } else if (inc.shortChunk !== -1 && chunk > inc.shortChunk) {
      throw new SockxferError('E_PROTOCOL', `stream chunk ${chunk} comes after the short (last) chunk ${inc.shortChunk}`);
    }
    if (inc.end) {
      const count = Math.ceil(inc.end.size / chunkSize);
      const expected = chunk === count - 1 ? inc.end.size - (count - 1) * chunkSize : chunkSize;
      if (chunk >= count || length !== expected) throw new SockxferError('E_PROTOCOL', `stream chunk ${chunk} (${length} bytes) does not fit the END's size ${inc.end.size}`);
    }
  }

  private async onEnd(frame: EndFrame, finished: () => void): Promise<void> {
    const inc = this.expect(frame.index, 'END');
    if (inc.end) throw new SockxferError('E_PROTOCOL', `END for entry ${frame.index} arrived twice`);
    const offer = this.offer!;
    if (frame.hash !== offer.hash) throw new SockxferError('E_PROTOCOL', `END carries a ${frame.hash} hash, the offer said ${offer.hash}`);
    const { entry, accept } = inc.plan;
    inc.end = frame;
    if (frame.abandoned) {
      inc.failure = new SockxferError('E_SOURCE_CHANGED', `the sender gave ${printableName(entry.name)} up: its source changed or vanished while it was being sent`);
      this.finish(inc, finished);
      return;
    }
    if (entry.kind === 'file' && frame.size !== entry.size) throw new SockxferError('E_PROTOCOL', `END says ${frame.size} bytes for entry ${frame.index}, the offer said ${entry.size}`);
    if (entry.kind === 'stream') {
      const { chunkSize } = offer;
      const count = Math.ceil(frame.size / chunkSize);
      const lastLength = frame.size - (count - 1) * chunkSize;
      if (frame.size > (this.options.maxSize ?? Infinity)) throw new SockxferError('E_LIMIT', `${printableName(entry.name)} is ${frame.size} bytes; this receiver takes at most ${this.options.maxSize}`);
      if (inc.have.end > count) throw new SockxferError('E_PROTOCOL', `END says ${frame.size} bytes, but chunk ${inc.have.end - 1} arrived`);
      if (inc.shortChunk !== -1 && (inc.shortChunk !== count - 1 || inc.shortLength !== lastLength)) {
        throw new SockxferError('E_PROTOCOL', `END says ${frame.size} bytes, but chunk ${inc.shortChunk} had ${inc.shortLength}`);
      }
    }
    // A check entry ends at its END: up to date, or refused (finishEntry says which); an update
    // entry ends there only when up to date, else its data follows as for any file.
    if (accept.action === 'check' || (accept.action === 'update' && inc.plan.existing!.equals(frame.digest))) {
      if (inc.have.size > 0) throw new SockxferError('E_PROTOCOL', `data for entry ${frame.index}, which is up to date`);
      this.finish(inc, finished);
      return;
    }
    if (this.complete(inc)) this.finish(inc, finished);
  }

  private complete(inc: Incoming): boolean {
    const count = Math.ceil(inc.end!.size / this.offer!.chunkSize);
    return inc.have.size === count;
  }

  /** The entry has all it will get: check, fsync and move it (in the background, a bounded number at once). */
  private finish(inc: Incoming, finished: () => void): void {
    inc.done = true;
    finished();
    const work = this.finishEntry(inc).finally(() => {
      this.finishing.delete(work);
      if (inc.part !== null) this.open--;
    });
    this.finishing.add(work);
  }

  private async finishEntry(inc: Incoming): Promise<void> {
    const { plan } = inc;
    const { entry, accept } = plan;
    const end = inc.end!;
    const offer = this.offer!;
    try {
      if (inc.failure) throw inc.failure;
      if (accept.action === 'check' || accept.action === 'update') {
        if (plan.existing!.equals(end.digest)) {
          this.settle(plan, 'up-to-date', plan.existing!, null, plan.target);
          return;
        }
        if (accept.action === 'check') {
          throw new SockxferError(codeFromWire(accept.code), `${printableName(entry.name)} differs from the file in place; not replaced (the receiver runs without --overwrite or --keep-both)`);
        }
      }
      if (this.sink) {
        await this.sink.flush();
        const digest = inc.hasher?.digest() ?? (await createHasher(offer.hash)).digest();
        if (!digest.equals(end.digest)) {
          throw Object.assign(new SockxferError('E_HASH_MISMATCH', `${printableName(entry.name)} from ${this.transport.remote}: whole-file ${offer.hash} of what went to standard output is ${digest.toString('hex')}, the sender says ${end.digest.toString('hex')}`), { digest });
        }
        this.settle(plan, 'committed', digest, null);
        return;
      }
      if (inc.part === null) this.opened(inc); // nothing to write (a 0-byte file), or every chunk held already
      let digest: Buffer;
      if (inc.resumed) {
        // Resumed data is read back and hashed whole: only the whole file's hash can tell that
        // the earlier run's bytes and this one's belong to the same content.
        await inc.part!.finish(entry.mode, entry.mtimeMs);
        digest = (await hashFile(inc.part!.path, offer.hash)).digest;
      } else {
        digest = inc.hasher?.digest() ?? (await createHasher(offer.hash)).digest();
      }
      if (!digest.equals(end.digest)) {
        const resumed = inc.resumed ? ' (after a resume: the partial data kept from an earlier run did not belong to this content, and is discarded)' : '';
        throw Object.assign(new SockxferError('E_HASH_MISMATCH', `${printableName(entry.name)} from ${this.transport.remote}: whole-file ${offer.hash} is ${digest.toString('hex')}, the sender says ${end.digest.toString('hex')}${resumed}`), { digest });
      }
      // Small files: one syncfs shared by all the files finished meanwhile makes their data
      // durable before they are moved into place, and a second one the moves themselves.
      const fsSyncer = this.options.fsSyncer;
      const batched = fsSyncer !== undefined && fsSyncer.available && entry.size <= SMALL_FILE && !inc.resumed;
      if (!inc.resumed) await inc.part!.finish(entry.mode, entry.mtimeMs, !batched);
      // Should the shared syncfs fail, each file and folder falls back to its own fsync.
      if (batched) await fsSyncer.sync().catch(() => fsyncFile(inc.part!.path));
      checkParents(this.options.dir, entry.name);
      const syncDir = (dir: string) => (batched ? fsSyncer.sync().catch(() => this.syncer.sync(dir)) : this.syncer.sync(dir));
      const landed = await inc.part!.commit(plan.target, this.options.policy, syncDir);
      inc.part = null;
      this.open--;
      if (plan.key && plan.journaled) await removePartial(this.options.dir, plan.key, false);
      this.settle(plan, 'committed', digest, null, landed);
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      await inc.part?.discard();
      if (plan.key && plan.journaled) await removePartial(this.options.dir, plan.key, true);
      this.settle(plan, 'failed', (err as { digest?: Buffer }).digest ?? null, e);
    }
  }

  /** Records an entry's outcome, tells the observer and (but for folders) the sender. */
  private settle(plan: Plan, status: VerdictStatus, digest: Buffer | null, error: SockxferError | null, landed?: string): void {
    const { entry } = plan;
    const rel = landed ? path.relative(this.options.dir, landed).split(path.sep).join('/') : '';
    const result: EntryResult = {
      index: entry.index,
      kind: entry.kind,
      name: entry.name,
      bytes: entry.kind === 'stream' ? (this.incoming.get(entry.index)?.end?.size ?? 0) : entry.size,
      digest: digest?.toString('hex') ?? null,
      result: status,
      ...(error ? { code: error.code, message: error.message } : {}),
      ...(landed ? { path: landed } : {}),
    };
    this.results.set(entry.index, result);
    if (this.info) this.observer.entry?.(this.info, result);
    sendQuietly(this.transport, () =>
      this.transport.send({
        type: 'verdict',
        index: entry.index,
        status,
        code: error?.wireCode ?? 0,
        hash: this.offer!.hash,
        digest: digest ?? Buffer.alloc(0),
        message: fitMessage(error?.message ?? status),
        path: rel,
      }),
    );
  }

  /** Folders get their mode and mtime last (adding files changes a folder's mtime), deepest first. */
  private async finishDirectories(): Promise<void> {
    for (let i = this.plans.length - 1; i >= 0; i--) {
      const plan = this.plans[i]!;
      if (plan.entry.kind !== 'directory' || plan.refused) continue;
      try {
        checkParents(this.options.dir, plan.entry.name);
        const st = await fs.lstat(plan.target);
        if (!st.isDirectory()) throw new SockxferError('E_IO', `${printableName(plan.entry.name)} is no longer a folder`);
        await fs.chmod(plan.target, plan.entry.mode & 0o777 & ~UMASK);
        const mtime = plan.entry.mtimeMs / 1000 + 5e-7;
        await fs.utimes(plan.target, mtime, mtime);
        this.settle(plan, 'committed', null, null, plan.target);
      } catch (err) {
        this.settle(plan, 'failed', null, toSockxferError(err, 'E_IO'));
      }
    }
  }

  /**
   * After a failure: lets running commits end, then keeps the partial data of resumable files
   * (fsynced, with their journals) and removes every other temporary file.
   */
  private async discardAll(): Promise<void> {
    await Promise.allSettled(this.finishing);
    await Promise.all(
      [...this.incoming.values()].map((inc) => {
        if (inc.done || inc.part === null) return undefined;
        return inc.plan.key !== null && inc.failure === null ? inc.part.suspend() : inc.part.discard();
      }),
    );
  }

  /** Lets go of the resume keys this session took. */
  private unlock(): void {
    for (const key of this.keys) this.locks.delete(key);
    this.keys.length = 0;
  }
}

/** The chunks (of `chunkSize`) lying wholly inside the durable byte ranges, as [start, end) chunk ranges, at most MAX_ACCEPT_RANGES. */
export function heldChunks(ranges: Array<[number, number]>, size: number, chunkSize: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const count = Math.ceil(size / chunkSize);
  for (const [a, b] of ranges) {
    const first = Math.ceil(a / chunkSize);
    // The last chunk is short: it is whole once the range reaches the end of the file.
    const end = b >= size ? count : Math.floor(b / chunkSize);
    if (end > first) out.push([first, end]);
    if (out.length === MAX_ACCEPT_RANGES) break;
  }
  return out;
}

function existsError(shown: string): SockxferError {
  return new SockxferError('E_EXISTS', `${shown} already exists in the target folder (the receiver runs without --overwrite)`);
}

/** Sends a frame if the connection still takes one; a peer that is gone needs no answer. */
function sendQuietly(transport: Transport, send: () => void): void {
  try {
    send();
  } catch {
    // the connection is closed
  }
}
