/**
 * The receiving side of one transfer, from HELLO to VERDICT. Data lands in a temporary file
 * beside the target; only a file whose every chunk and whole-file hash checked is moved to its
 * final name. Any failure removes the temporary file.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { SockxferError, toSockxferError } from '../errors.js';
import {
  MAX_CHUNK_SIZE,
  MAX_PROTOCOL_VERSION,
  MIN_CHUNK_SIZE,
  MIN_PROTOCOL_VERSION,
  WHOLE_TRANSFER,
  dataLength,
  type DataFrame,
  type EndFrame,
  type OfferEntry,
  type OfferFrame,
} from '../protocol/index.js';
import type { Transport } from '../transport/index.js';
import type { TransferInfo, TransferObserver, TransferResult } from './events.js';
import { createHasher } from './hash.js';
import { nameProblem, printableName } from './names.js';
import { OrderedHasher } from './ordered-hasher.js';
import { PartFile } from './part-file.js';
import { expectFrame, peerError } from './peer.js';
import { RangeSet } from './range-set.js';
import { SOFTWARE } from './version.js';

export interface ReceiveOptions {
  /** The folder files are committed to (absolute, existing). */
  dir: string;
  overwrite: boolean;
  /** Handshake timeout, and the longest a transfer may go without progress. */
  timeoutMs: number;
}

export interface SessionObserver extends TransferObserver {
  /** The peer said HELLO: from here on this is a sockxfer transfer, not a stray connection. */
  hello?(peer: string): void;
}

/** Bytes between progress reports. */
const PROGRESS_STEP = 256 * 1024;

/** An error the receiver answers with REFUSE (before any data) rather than ERROR. */
class Refusal extends SockxferError {}

/** Serves one sender on `transport`; resolves with the committed file, rejects with why not. */
export async function receiveSession(transport: Transport, options: ReceiveOptions, observer: SessionObserver = {}): Promise<TransferResult> {
  transport.setIdleTimeout(options.timeoutMs);
  let part: PartFile | null = null;
  let answered = false;
  try {
    await handshake(transport, observer);
    const offer = await readOffer(transport);
    const entry = await checkOffer(offer, transport, options);
    part = await PartFile.create(options.dir, entry.name).catch((err: SockxferError) => {
      throw new Refusal(err.code, err.message);
    });
    transport.send({ type: 'accept', entries: [{ index: entry.index, action: 'send', have: [] }] });

    const info: TransferInfo = {
      session: transport.session.toString(16).padStart(16, '0'),
      name: entry.name,
      bytes: entry.size,
      hash: offer.hash,
      transport: transport.kind,
      peer: transport.remote,
    };
    const started = performance.now();
    observer.start?.(info);
    const { end, digest } = await receiveChunks(transport, part, offer, entry, (done) => observer.progress?.(info, done));

    const target = path.join(options.dir, entry.name);
    answered = true;
    if (!digest.equals(end.digest)) {
      const err = new SockxferError('E_HASH_MISMATCH', `${printableName(entry.name)} from ${transport.remote}: whole-file ${offer.hash} is ${digest.toString('hex')}, the sender says ${end.digest.toString('hex')}`);
      sendVerdict(transport, entry.index, offer, digest, err);
      throw err;
    }
    try {
      await part.finish(entry.mode, entry.mtimeMs);
      await part.commit(target, options.overwrite);
    } catch (err) {
      const e = toSockxferError(err, 'E_IO');
      sendVerdict(transport, entry.index, offer, digest, e);
      throw e;
    }
    part = null;
    sendVerdict(transport, entry.index, offer, digest, null);
    const seconds = (performance.now() - started) / 1000;
    await transport.close();
    return { ...info, digest: digest.toString('hex'), seconds, bytesPerSecond: seconds > 0 ? entry.size / seconds : 0, path: target, stats: transport.stats() };
  } catch (err) {
    const e = toSockxferError(err);
    await part?.discard();
    if (e instanceof Refusal) {
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
  }
}

/** Sends a frame if the connection still takes one; a peer that is gone needs no answer. */
function sendQuietly(transport: Transport, send: () => void): void {
  try {
    send();
  } catch {
    // the connection is closed
  }
}

function sendVerdict(transport: Transport, index: number, offer: OfferFrame, digest: Buffer, error: SockxferError | null): void {
  sendQuietly(transport, () =>
    transport.send({
      type: 'verdict',
      index,
      committed: error === null,
      code: error?.wireCode ?? 0,
      hash: offer.hash,
      digest,
      message: error?.message ?? 'committed',
    }),
  );
}

async function handshake(transport: Transport, observer: SessionObserver): Promise<void> {
  const hello = await expectFrame(transport, 'hello');
  // A HELLO makes this a sockxfer transfer, even one that fails on the version just below.
  observer.hello?.(transport.remote);
  const version = Math.min(hello.maxVersion, MAX_PROTOCOL_VERSION);
  if (version < Math.max(hello.minVersion, MIN_PROTOCOL_VERSION)) {
    throw new SockxferError(
      'E_VERSION',
      `${transport.remote} (${printableName(hello.software)}) speaks protocol versions ${hello.minVersion}-${hello.maxVersion}; this receiver speaks ${MIN_PROTOCOL_VERSION}-${MAX_PROTOCOL_VERSION}`,
    );
  }
  transport.send({ type: 'welcome', version, capabilities: 0, software: SOFTWARE });
}

/** Collects the OFFER frames of a transfer (one, or several flagged "more"). */
async function readOffer(transport: Transport): Promise<OfferFrame> {
  const first = await expectFrame(transport, 'offer');
  // Refused before any continuation frame is read, so a huge file count cannot grow the list.
  if (first.fileCount !== 1) throw new Refusal('E_UNSUPPORTED', `this receiver takes one file per transfer; ${first.fileCount} were offered`);
  const entries: OfferEntry[] = [...first.entries];
  for (let last = first; last.more; ) {
    last = await expectFrame(transport, 'offer');
    if (last.chunkSize !== first.chunkSize || last.hash !== first.hash || last.fileCount !== first.fileCount || last.totalBytes !== first.totalBytes) {
      throw new SockxferError('E_PROTOCOL', 'OFFER frames of one transfer disagree');
    }
    if (entries.length + last.entries.length > first.fileCount) throw new SockxferError('E_PROTOCOL', 'more offer entries than the file count');
    entries.push(...last.entries);
  }
  return { ...first, entries, more: false };
}

/** Checks an offer against what this receiver takes; returns the file to receive or throws a Refusal. */
async function checkOffer(offer: OfferFrame, transport: Transport, options: ReceiveOptions): Promise<OfferEntry> {
  if (offer.entries.length !== offer.fileCount) throw new SockxferError('E_PROTOCOL', `offer lists ${offer.entries.length} entries but counts ${offer.fileCount}`);
  const entry = offer.entries[0]!;
  if (entry.index !== 0) throw new SockxferError('E_PROTOCOL', `offer entry has index ${entry.index}, expected 0`);
  if (entry.kind !== 'file') throw new Refusal('E_UNSUPPORTED', 'this receiver takes files, not folders');
  if (offer.totalBytes !== entry.size) throw new SockxferError('E_PROTOCOL', `offer total ${offer.totalBytes} bytes does not match the file size ${entry.size}`);
  const chunkLimit = Math.min(MAX_CHUNK_SIZE, transport.maxChunkSize);
  if (offer.chunkSize < MIN_CHUNK_SIZE || offer.chunkSize > chunkLimit) {
    throw new Refusal('E_UNSUPPORTED', `chunk size ${offer.chunkSize} is outside ${MIN_CHUNK_SIZE}-${chunkLimit}`);
  }
  const problem = nameProblem(entry.name);
  if (problem) throw new Refusal('E_BAD_NAME', `refused the name "${printableName(entry.name)}": ${problem}`);
  const target = path.join(options.dir, entry.name);
  const existing = await fs.lstat(target).catch(() => null);
  if (existing && !(options.overwrite && existing.isFile())) {
    throw new Refusal('E_EXISTS', existing.isFile() ? `${printableName(entry.name)} already exists in the target folder (the receiver runs without --overwrite)` : `${printableName(entry.name)} exists in the target folder and is not a regular file`);
  }
  return entry;
}

/** Receives chunks in any order until every chunk and the END frame are in; returns END and the hash of what was written. */
async function receiveChunks(
  transport: Transport,
  part: PartFile,
  offer: OfferFrame,
  entry: OfferEntry,
  progress: (done: number) => void,
): Promise<{ end: EndFrame; digest: Buffer }> {
  const { chunkSize } = offer;
  const chunkCount = Math.ceil(entry.size / chunkSize);
  const lastLength = entry.size - (chunkCount - 1) * chunkSize;
  const have = new RangeSet();
  const hasher = new OrderedHasher(await createHasher(offer.hash));
  let received = 0;
  let reported = 0;
  let end: EndFrame | null = null;

  const checkData = (frame: DataFrame): number => {
    if (frame.index !== entry.index) throw new SockxferError('E_PROTOCOL', `data for file ${frame.index}, which was not offered`);
    if (frame.chunk >= chunkCount) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} is past the end of the file (${chunkCount} chunks)`);
    const expected = frame.chunk === chunkCount - 1 ? lastLength : chunkSize;
    const length = dataLength(frame);
    if (length !== expected) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} has ${length} bytes, expected ${expected}`);
    return length;
  };

  while (end === null || have.size < chunkCount) {
    const frame = transport.tryReceive() ?? (await transport.receive());
    if (frame.type === 'data') {
      const length = checkData(frame);
      if (!have.add(frame.chunk)) throw new SockxferError('E_PROTOCOL', `chunk ${frame.chunk} arrived twice`);
      hasher.add(frame.chunk, frame.data, length);
      const wait = part.write(frame.chunk * chunkSize, frame.data, length);
      if (wait) await wait;
      received += length;
      // Per chunk would be 700,000 calls per GiB of small UDP chunks; every 256 KiB is plenty for 4 updates a second.
      if (received - reported >= PROGRESS_STEP || received === entry.size) {
        reported = received;
        progress(received);
      }
    } else if (frame.type === 'end') {
      if (end !== null) throw new SockxferError('E_PROTOCOL', 'END arrived twice');
      if (frame.index !== entry.index) throw new SockxferError('E_PROTOCOL', `END for file ${frame.index}, which was not offered`);
      if (frame.hash !== offer.hash) throw new SockxferError('E_PROTOCOL', `END carries a ${frame.hash} hash, the offer said ${offer.hash}`);
      end = frame;
    } else if (frame.type === 'error') {
      throw peerError(frame, transport);
    } else {
      throw new SockxferError('E_PROTOCOL', `unexpected ${frame.type} frame during the data`);
    }
  }
  return { end, digest: hasher.digest() };
}
