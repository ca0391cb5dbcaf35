/** Bounds-checked big-endian field readers and writers for frame bodies. */
import { SockxferError } from '../errors.js';

// ignoreBOM: a name that starts with U+FEFF is a name, not a byte-order mark to strip.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const TWO_32 = 0x1_0000_0000;

function malformed(what: string): SockxferError {
  return new SockxferError('E_PROTOCOL', `malformed frame: ${what}`);
}

/** Reads fields from a frame body; every read checks the bytes are there. */
export class WireReader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) throw malformed(`${what} runs past the end of the body`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A u64 that must fit a JS number exactly (below 2^53); larger values are refused, not rounded. */
  u64(what: string): number {
    this.need(8, what);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    if (hi > 0x1f_ffff) throw malformed(`${what} is larger than 2^53-1`);
    this.pos += 8;
    return hi * TWO_32 + lo;
  }

  /** Bytes with a u8 length prefix, at most `max` long. */
  bytes8(what: string, max: number): Buffer {
    const n = this.u8(what);
    if (n > max) throw malformed(`${what} is ${n} bytes, the limit is ${max}`);
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** UTF-8 text with a u16 length prefix, at most `max` bytes; invalid UTF-8 is refused. */
  str16(what: string, max: number): string {
    const n = this.u16(what);
    if (n > max) throw malformed(`${what} is ${n} bytes, the limit is ${max}`);
    this.need(n, what);
    const raw = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(raw);
    } catch {
      throw malformed(`${what} is not valid UTF-8`);
    }
  }

  /** All bytes left in the body (no copy). */
  rest(): Buffer {
    const v = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return v;
  }

  /** Refuses trailing bytes, so every body has exactly one encoding. */
  end(what: string): void {
    if (this.pos !== this.buf.length) throw malformed(`${this.buf.length - this.pos} unexpected bytes after ${what}`);
  }
}

/** Builds a frame body; sizes are known up front, so it writes into one buffer. */
export class WireWriter {
  private readonly parts: Buffer[] = [];
  private length = 0;

  private push(b: Buffer): this {
    this.parts.push(b);
    this.length += b.length;
    return this;
  }

  u8(v: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(v);
    return this.push(b);
  }

  u16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(v);
    return this.push(b);
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v); // throws a RangeError outside 0..2^32-1, as u8, u16 and u64 do
    return this.push(b);
  }

  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u64 field out of range: ${v}`);
    const b = Buffer.allocUnsafe(8);
    b.writeUInt32BE(Math.floor(v / TWO_32), 0);
    b.writeUInt32BE(v % TWO_32, 4);
    return this.push(b);
  }

  bytes8(v: Uint8Array, max: number): this {
    if (v.length > max) throw new RangeError(`field of ${v.length} bytes, limit ${max}`);
    this.u8(v.length);
    return this.push(Buffer.from(v));
  }

  str16(v: string, max: number): this {
    const b = Buffer.from(v, 'utf8');
    if (b.length > max) throw new RangeError(`text field of ${b.length} bytes, limit ${max}`);
    this.u16(b.length);
    return this.push(b);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}
