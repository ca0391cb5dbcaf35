/**
 * Writes chunks to a stream (standard output) in file order, whatever order they arrive in.
 * Early chunks wait in memory, bounded as in OrderedHasher; the stream's backpressure is passed
 * on (add() resolves once the stream takes more), and so on to the sender.
 */
import { SockxferError } from '../errors.js';
import { MAX_HELD_BYTES } from './ordered-hasher.js';

export class OrderedSink {
  private next = 0;
  private readonly held = new Map<number, Buffer>();
  private heldBytes = 0;
  private failure: SockxferError | null = null;
  private last: Promise<void> = Promise.resolve();

  constructor(private readonly stream: NodeJS.WritableStream) {
    stream.on('error', (err: Error) => {
      this.failure ??= new SockxferError('E_IO', `cannot write to standard output: ${err.message}`, { cause: err });
    });
  }

  /** Adds chunk `index` (each exactly once); resolves when the stream can take more. */
  async add(index: number, pieces: Buffer[], length: number): Promise<void> {
    if (this.failure) throw this.failure;
    if (index !== this.next) {
      if (this.heldBytes + length > MAX_HELD_BYTES) throw new SockxferError('E_PROTOCOL', `chunk ${index} arrived too far ahead of chunk ${this.next}`);
      this.held.set(index, Buffer.concat(pieces, length));
      this.heldBytes += length;
      return;
    }
    let wait = this.write(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, length));
    this.next++;
    for (let early = this.held.get(this.next); early !== undefined; early = this.held.get(this.next)) {
      this.held.delete(this.next);
      this.heldBytes -= early.length;
      wait = this.write(early) ?? wait;
      this.next++;
    }
    if (wait) await wait;
    if (this.failure) throw this.failure;
  }

  private write(buf: Buffer): Promise<void> | undefined {
    let done!: () => void;
    this.last = new Promise<void>((resolve) => (done = resolve));
    const more = this.stream.write(buf, () => done());
    if (more) return undefined;
    return new Promise<void>((resolve) => {
      const onDrain = () => {
        this.stream.removeListener('error', onDrain);
        resolve();
      };
      this.stream.once('drain', onDrain);
      this.stream.once('error', onDrain);
    });
  }

  /** Resolves when everything written so far has been handed to the system. */
  async flush(): Promise<void> {
    await this.last;
    if (this.failure) throw this.failure;
  }
}
