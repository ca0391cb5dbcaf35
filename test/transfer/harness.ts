/**
 * Shared by the transfer tests: an in-process Receiver on 127.0.0.1 port 0 whose events a test
 * awaits one by one, a hostile sender built from node:net and the project's own encoder, and a
 * few builders for version-2 frames.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { expect } from 'vitest';
import type { SockxferError } from '../../src/errors.js';
import {
  HEADER_SIZE,
  MAGIC,
  PROTOCOL_VERSION,
  StreamDeframer,
  crc32c,
  encodeFrameToBuffer,
  type AcceptEntry,
  type Frame,
  type HashAlgorithm,
  type OfferEntry,
  type OfferFrame,
  type VerdictFrame,
} from '../../src/protocol/index.js';
import type { EntryResult, TransferInfo, TransferResult } from '../../src/transfer/events.js';
import { createHasher } from '../../src/transfer/hash.js';
import { Receiver, type ReceiverObserver, type ReceiverOptions } from '../../src/transfer/receiver.js';

export async function digestOf(algorithm: HashAlgorithm, data: Buffer): Promise<Buffer> {
  const h = await createHasher(algorithm);
  h.update(data);
  return h.digest();
}

/** A queue of events that a test awaits one by one, whether they came before or after it asked. */
export class Queue<T> {
  private readonly items: T[] = [];
  private readonly waiting: Array<(item: T) => void> = [];

  push(item: T): void {
    const w = this.waiting.shift();
    if (w) w(item);
    else this.items.push(item);
  }

  next(): Promise<T> {
    const item = this.items.shift();
    return item !== undefined ? Promise.resolve(item) : new Promise((resolve) => this.waiting.push(resolve));
  }

  get length(): number {
    return this.items.length;
  }
}

export const SESSION = 0x5eed_0000_0000_0001n;
/** A fixed mtime for hand-made offers (whole milliseconds, so it survives the trip exactly). */
export const MTIME = 1_600_000_000_123;

const openSenders: FakeSender[] = [];

/** Destroys every FakeSender socket a test left open. */
export function destroyFakeSenders(): void {
  for (const s of openSenders.splice(0)) s.socket.destroy();
}

/** A sender that says exactly what a test tells it to, and records every frame the receiver sends. */
export class FakeSender {
  private readonly deframer = new StreamDeframer();
  private readonly frames = new Queue<Frame | Error>();
  /** Sessions of the frames received, in order. */
  readonly sessions: bigint[] = [];
  /** Resolves when the receiver has closed the connection. */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const d of this.deframer.push(chunk)) {
          this.sessions.push(d.session);
          this.frames.push(d.frame);
        }
      } catch (err) {
        this.frames.push(err as Error);
      }
    });
    // Writes after the receiver hung up may fail; the test looks at what was received.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => this.frames.push(new Error('connection closed')));
  }

  static async connect(port: number): Promise<FakeSender> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const s = new FakeSender(socket);
    openSenders.push(s);
    return s;
  }

  send(frame: Frame, session = SESSION): void {
    this.socket.write(encodeFrameToBuffer(frame, session));
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The next frame from the receiver; rejects once the connection is closed. */
  async next(): Promise<Frame> {
    const item = await this.frames.next();
    if (item instanceof Error) {
      this.frames.push(item); // closed stays closed
      throw item;
    }
    return item;
  }

  /** HELLO, and the receiver's WELCOME (version 2). */
  async hello(minVersion = 2, maxVersion = 2): Promise<void> {
    this.send({ type: 'hello', minVersion, maxVersion, capabilities: 0, software: 'hostile/2' });
    const welcome = await this.next();
    expect(welcome).toMatchObject({ type: 'welcome', version: 2 });
  }

  /** Sends `offer` and gathers the ACCEPT frames that answer it (following FLAG_MORE). */
  async offer(offer: OfferFrame): Promise<AcceptEntry[]> {
    this.send(offer);
    const entries: AcceptEntry[] = [];
    for (;;) {
      const reply = await this.next();
      if (reply.type !== 'accept') throw new Error(`expected ACCEPT, got ${JSON.stringify(reply)}`);
      entries.push(...reply.entries);
      if (!reply.more) return entries;
    }
  }

  /** HELLO and an OFFER of one file, up to the receiver's ACCEPT (send, nothing held). */
  async offerAccepted(name: string, size: number, chunkSize: number, hash: HashAlgorithm = 'xxh128'): Promise<void> {
    await this.hello();
    this.send(offerOf(name, size, chunkSize, hash));
    expect(await this.next()).toEqual({ type: 'accept', entries: [sendAll(0)], more: false });
  }

  /** Sends a whole file or stream honestly: every chunk in order, then END. */
  async sendEntry(index: number, content: Buffer, chunkSize: number, hash: HashAlgorithm = 'xxh128'): Promise<void> {
    for (let chunk = 0; chunk * chunkSize < content.length; chunk++) {
      this.send({ type: 'data', index, chunk, data: [content.subarray(chunk * chunkSize, (chunk + 1) * chunkSize)] });
    }
    this.send({ type: 'end', index, size: content.length, hash, digest: await digestOf(hash, content), abandoned: false });
  }

  /** Every VERDICT up to and including the one for the whole transfer, then the receiver's close. */
  async verdicts(): Promise<VerdictFrame[]> {
    const out: VerdictFrame[] = [];
    for (;;) {
      const f = await this.next();
      if (f.type !== 'verdict') throw new Error(`expected VERDICT, got ${JSON.stringify(f)}`);
      out.push(f);
      if (f.index === 0xffffffff) break;
    }
    await this.closed;
    return out;
  }
}

/** The ACCEPT entry of a file the receiver wants whole. */
export function sendAll(index: number): AcceptEntry {
  return { index, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] };
}

export function offerOf(name: string, size: number, chunkSize: number, hash: HashAlgorithm = 'xxh128'): OfferFrame {
  return {
    type: 'offer',
    chunkSize,
    hash,
    fileCount: 1,
    totalBytes: size,
    more: false,
    entries: [{ index: 0, kind: 'file', name, size, mode: 0o644, mtimeMs: MTIME }],
  };
}

export type EntrySpec = Pick<OfferEntry, 'name'> & Partial<Omit<OfferEntry, 'name' | 'index'>>;

/** An OFFER of several entries (files unless said otherwise), indexed in order, with the right count and total. */
export function offerEntries(specs: EntrySpec[], chunkSize = 1024, hash: HashAlgorithm = 'xxh128'): OfferFrame {
  const entries: OfferEntry[] = specs.map((s, index) => ({ index, kind: s.kind ?? 'file', name: s.name, size: s.size ?? 0, mode: s.mode ?? (s.kind === 'directory' ? 0o755 : 0o644), mtimeMs: s.mtimeMs ?? MTIME }));
  return { type: 'offer', chunkSize, hash, fileCount: entries.length, totalBytes: entries.reduce((n, e) => n + e.size, 0), more: false, entries };
}

/** A frame built by hand (header, body, CRC32C), for bodies or headers the project's encoder refuses to make. */
export function rawFrame(type: number, body: Buffer, options: { session?: bigint; version?: number; flags?: number } = {}): Buffer {
  const head = Buffer.alloc(HEADER_SIZE);
  head.writeUInt32BE(MAGIC, 0);
  head.writeUInt8(options.version ?? PROTOCOL_VERSION, 4);
  head.writeUInt8(type, 5);
  head.writeUInt16BE(options.flags ?? 0, 6);
  head.writeBigUInt64BE(options.session ?? SESSION, 8);
  head.writeUInt32BE(body.length, 16);
  const unsealed = Buffer.concat([head, body]);
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32BE(crc32c(unsealed));
  return Buffer.concat([unsealed, trailer]);
}

/** Every path under `dir` (folders, files and links, not following links), relative, with "/", sorted. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const name of await fs.readdir(abs)) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      out.push(childRel);
      const st = await fs.lstat(path.join(abs, name));
      if (st.isDirectory()) await walk(path.join(abs, name), childRel);
    }
  };
  await walk(dir, '');
  return out.sort();
}

export interface ReceiverEvents {
  failed: Queue<{ peer: string; info: TransferInfo | null; error: SockxferError }>;
  done: Queue<TransferResult>;
  start: Queue<TransferInfo>;
  progress: Queue<number>;
  entry: Queue<EntryResult>;
}

export interface StartedReceiver {
  receiver: Receiver;
  port: number;
  events: ReceiverEvents;
}

/** A Receiver on 127.0.0.1, TCP, port 0, serving many transfers into `dir`, every event queued. */
export async function startReceiver(dir: string, options: Partial<ReceiverOptions> = {}): Promise<StartedReceiver> {
  const events: ReceiverEvents = { failed: new Queue(), done: new Queue(), start: new Queue(), progress: new Queue(), entry: new Queue() };
  const observer: ReceiverObserver = {
    failed: (peer, info, error) => events.failed.push({ peer, info, error }),
    done: (result) => events.done.push(result),
    start: (info) => events.start.push(info),
    progress: (_info, done) => events.progress.push(done),
    entry: (_info, entry) => events.entry.push(entry),
  };
  const receiver = new Receiver({ dir, host: '127.0.0.1', port: 0, transports: ['tcp'], once: false, policy: 'refuse', timeoutMs: 10_000, ...options }, observer);
  const [address] = await receiver.start();
  expect(address).toMatchObject({ host: '127.0.0.1', transport: 'tcp' });
  return { receiver, port: address!.port, events };
}
