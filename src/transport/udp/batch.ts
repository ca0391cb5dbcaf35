/**
 * Batched datagram I/O (Linux): many datagrams per system call instead of one.
 *
 * Node's dgram makes one system call and one trip through its JS machinery per datagram: at
 * 1472-byte datagrams that is most of a loopback transfer's CPU. `native/udp_batch.c` (built by
 * `npm ci`) borrows a dgram socket's file descriptor and
 *
 * - sends: one sendmmsg(2) per batch, each run of equal-size datagrams coalesced into one UDP GSO
 *   message (UDP_SEGMENT) that the kernel splits into the same datagrams, so the wire carries
 *   exactly what dgram would have sent;
 * - receives: one recvmmsg(2) reads every datagram waiting, after dgram has delivered the first.
 *
 * The sockets stay Node's: binding, connecting, ICMP errors and closing are dgram's. Without the
 * addon (not built, not Linux) or with SOCKXFER_UDP_BATCH=0, everything goes through dgram; the
 * `io` field of the transfer's statistics says which path ran.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { fileURLToPath } from 'node:url';
import type dgram from 'node:dgram';

/** How datagrams went to the socket: GSO batches, sendmmsg batches, or one dgram send each. */
export type UdpIo = 'gso' | 'sendmmsg' | 'dgram';

interface Native {
  supported(): boolean;
  send(fd: number, buffers: Buffer[], from: number, count: number, gso: boolean): number;
  receive(fd: number, buffers: Buffer[], max: number, meta: Int32Array, addresses: string[]): number;
  encodeData(slab: Buffer, at: number, head: Buffer, pn: number, seq: number, index: number, chunk: number, bytes: Buffer): number;
  crc32c(data: Buffer): number;
  crcOk(packet: Buffer): boolean;
}

/** The environment variable that turns batching off (`0`), for comparisons and as an escape hatch. */
export const BATCH_ENV = 'SOCKXFER_UDP_BATCH';

function load(): { native: Native | null; reason: string } {
  if (process.env[BATCH_ENV] === '0') return { native: null, reason: `${BATCH_ENV}=0` };
  if (process.platform !== 'linux') return { native: null, reason: `not Linux (${process.platform})` };
  // From src/transport/udp (tests) or dist/src/transport/udp (the built CLI): the project's root
  // is the first folder above with build/Release/udp_batch.node.
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 6; up++, dir = path.dirname(dir)) {
    const file = path.join(dir, 'build', 'Release', 'udp_batch.node');
    if (!fs.existsSync(file)) continue;
    try {
      const native = createRequire(import.meta.url)(file) as Native;
      return native.supported() ? { native, reason: '' } : { native: null, reason: 'unsupported here' };
    } catch (err) {
      return { native: null, reason: `cannot load ${file}: ${(err as Error).message}` };
    }
  }
  return { native: null, reason: 'native/udp_batch.c is not built (npm ci builds it)' };
}

const loaded = load();

/**
 * The addon's DATA packet encoder (packet.ts's DataPacketEncoder uses it when present): the
 * header, the chunk bytes and the CRC32C in one call. Null where batching is off.
 */
export const nativeEncodeData: Native['encodeData'] | null = loaded.native ? loaded.native.encodeData : null;

/** The addon's check of a packet's trailing CRC32C (decodePacket uses it when present). */
export const nativeCrcOk: Native['crcOk'] | null = loaded.native ? loaded.native.crcOk : null;

/** The addon's CRC32C, for tests that hold it against fast-crc32c (null where batching is off). */
export const nativeCrc32c: Native['crc32c'] | null = loaded.native ? loaded.native.crc32c : null;

/** Whether batching is on in this process, and if not, why. */
export const batching: { readonly available: boolean; readonly reason: string } = { available: loaded.native !== null, reason: loaded.reason };

/**
 * A dgram socket's file descriptor, or -1. dgram keeps its handle under an internal symbol
 * (`socket._handle` is the same handle, deprecated since Node 10): an unknown layout gives -1
 * and the caller stays on dgram.
 */
export function socketFd(socket: dgram.Socket): number {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const handle = key === undefined ? undefined : (socket as unknown as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[key]?.handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

const E = os.constants.errno;
/** Errors that say the kernel or the route cannot do UDP GSO: batches go on without it. */
const NO_GSO = new Set<number>([E.EIO, E.EINVAL, E.ENOPROTOOPT, E.EOPNOTSUPP]);
/** The socket's buffer is full: the rest goes through dgram, which queues it. */
const FULL = new Set<number>([E.EAGAIN, E.EWOULDBLOCK, E.ENOBUFS]);
/** Datagrams per native call (the addon's limit). */
const MAX_BATCH = 256;

function errnoError(negErrno: number): NodeJS.ErrnoException {
  const code = util.getSystemErrorName(negErrno);
  const err = new Error(`send ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = negErrno;
  err.syscall = 'send';
  return err;
}

/**
 * Sends datagrams on a connected socket in batches. `send` queues a datagram; the batch goes out
 * in a microtask, once the code that queued it (a flush of the connection) has returned, so a
 * burst the pacer allows becomes one system call. The queued buffers must stay unchanged until
 * then (`idle` says when none are queued).
 */
export class BatchSender {
  private readonly pending: Buffer[] = [];
  private gso: boolean;
  private readonly fd: number;
  private readonly flushBound = () => this.flush();

  constructor(
    private readonly socket: dgram.Socket,
    private readonly isClosed: () => boolean,
  ) {
    this.fd = loaded.native ? socketFd(socket) : -1;
    this.gso = this.fd >= 0;
  }

  /** What this sender does now: it falls from 'gso' to 'sendmmsg' if the kernel refuses GSO. */
  get io(): UdpIo {
    return this.fd < 0 ? 'dgram' : this.gso ? 'gso' : 'sendmmsg';
  }

  /** No datagram is waiting in this batch or in dgram's queue. */
  get idle(): boolean {
    return this.pending.length === 0 && this.socket.getSendQueueCount() === 0;
  }

  send(packet: Buffer): void {
    if (this.fd < 0) {
      this.socket.send(packet);
      return;
    }
    if (this.pending.length === 0) queueMicrotask(this.flushBound);
    this.pending.push(packet);
  }

  /** Sends what is queued now. */
  flush(): void {
    const pending = this.pending;
    const n = pending.length;
    if (n === 0) return;
    if (this.isClosed()) {
      pending.length = 0;
      return;
    }
    let i = 0;
    let error: NodeJS.ErrnoException | null = null;
    while (i < n) {
      const r = loaded.native!.send(this.fd, pending, i, Math.min(n - i, MAX_BATCH), this.gso);
      if (r > 0) {
        i += r;
        continue;
      }
      if (this.gso && NO_GSO.has(-r)) {
        this.gso = false;
        continue;
      }
      // A full buffer, or an error for dgram to report (ICMP port unreachable, too large): the
      // rest goes one by one through dgram, as without batching.
      if (r < 0 && !FULL.has(-r)) error = errnoError(r);
      break;
    }
    const rest = i < n ? pending.slice(i) : null;
    pending.length = 0;
    if (error) this.socket.emit('error', error);
    if (rest && !this.isClosed()) {
      try {
        for (const p of rest) this.socket.send(p);
      } catch {
        // The socket is closing; loss recovery or the idle timeout will tell.
      }
    }
  }
}

/** Where a datagram came from (as dgram's rinfo, without its size). */
export interface Source {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

/** Datagrams per recvmmsg call. */
const SLOTS_PER_CALL = 64;
/** recvmmsg calls per drain: a bound, so one busy socket cannot hold the event loop. */
const DRAIN_CALLS = 16;

/** Buffers kept for reuse, in bytes at most (about 40k datagrams of 1472 bytes). */
const MAX_FREE_BYTES = 64 * 1024 * 1024;

/**
 * Reads the datagrams waiting on a socket, in batches, after dgram delivered one. A datagram
 * longer than `slot` bytes arrives cut to `slot` bytes (it then fails its checks as corrupt).
 *
 * Each datagram lands in a buffer of its own, which the receiver may keep. A buffer handed back
 * with recycle() (a DATA chunk written to its file) takes the next datagram: a long transfer then
 * allocates no memory per datagram, and what it holds does not depend on when the garbage
 * collector runs. (Fresh buffers per datagram, as dgram makes, left freed memory behind faster
 * than V8 and malloc gave it back: a 4 GiB transfer's receiver grew to 300–700 MB.)
 */
export class BatchReceiver {
  private readonly fd: number;
  private buffers: Buffer[] = [];
  private free: Buffer[] = [];
  private maxFree = 0;
  private readonly meta = new Int32Array(3 * SLOTS_PER_CALL);
  private readonly addresses: string[] = [];
  /** Bytes per datagram buffer: the largest datagram expected. 0: no draining. */
  private slot = 0;

  constructor(socket: dgram.Socket) {
    this.fd = loaded.native ? socketFd(socket) : -1;
  }

  get enabled(): boolean {
    return this.fd >= 0;
  }

  /** Buffers waiting for reuse (for tests). */
  get freeBuffers(): number {
    return this.free.length;
  }

  /** Datagrams of up to `size` bytes are expected from now on. */
  expect(size: number): void {
    if (size > this.slot) {
      this.slot = size;
      this.free = [];
      this.maxFree = Math.floor(MAX_FREE_BYTES / size);
      this.buffers = [];
      for (let i = 0; i < SLOTS_PER_CALL; i++) this.buffers.push(Buffer.allocUnsafeSlow(size));
    }
  }

  /**
   * Takes back a buffer drain() handed out (or a view of one), for a later datagram. The caller
   * must hold no reference to its bytes any more.
   */
  recycle(datagram: Buffer): void {
    const ab = datagram.buffer;
    if (ab.byteLength !== this.slot || this.free.length >= this.maxFree) return;
    this.free.push(datagram.byteOffset === 0 && datagram.length === this.slot ? datagram : Buffer.from(ab, 0, this.slot));
  }

  /**
   * A datagram dgram delivered, copied into a buffer of the pool (null when batching is off, or
   * before a datagram size is known, or when it does not fit). Copying one datagram per wakeup
   * costs less than what a second kind of buffer (dgram's) costs the receiver's optimised code.
   */
  adopt(msg: Buffer): Buffer | null {
    const slot = this.slot;
    if (this.fd < 0 || slot === 0 || msg.length > slot) return null;
    const buf = this.free.pop() ?? Buffer.allocUnsafeSlow(slot);
    msg.copy(buf, 0, 0, msg.length);
    return msg.length === slot ? buf : buf.subarray(0, msg.length);
  }

  /** Reads what is waiting; calls `onDatagram` for each (lent: true). Returns how many. */
  drain(onDatagram: (msg: Buffer, source: Source, lent: boolean) => void): number {
    if (this.fd < 0 || this.slot === 0) return 0;
    const slot = this.slot;
    const meta = this.meta;
    const addresses = this.addresses;
    const buffers = this.buffers;
    const free = this.free;
    let count = 0;
    let source: Source | null = null;
    for (let call = 0; call < DRAIN_CALLS; call++) {
      const r = loaded.native!.receive(this.fd, buffers, SLOTS_PER_CALL, meta, addresses);
      if (r <= 0) break;
      for (let i = 0; i < r; i++) {
        if (meta[3 * i + 2] === 1 || source === null) {
          const address = addresses[i]!;
          source = { address, family: address.includes(':') ? 'IPv6' : 'IPv4', port: meta[3 * i + 1]! };
        }
        const len = meta[3 * i]!;
        const buf = buffers[i]!;
        buffers[i] = free.pop() ?? Buffer.allocUnsafeSlow(slot);
        onDatagram(len < 0 || len === slot ? buf : buf.subarray(0, len), source, true);
      }
      count += r;
      if (r < SLOTS_PER_CALL) break;
    }
    return count;
  }
}
