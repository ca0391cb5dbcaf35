/**
 * StreamDeframer tests: the same frames come out whatever way the byte stream is cut
 * (one byte at a time, seeded random pieces, every two-way split), hostile headers are refused
 * before their body arrives, and a failure is sticky.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  decodeFrame,
  encodeFrameToBuffer,
  HEADER_SIZE,
  StreamDeframer,
  WHOLE_TRANSFER,
  type DecodedFrame,
  type Frame,
} from '../../src/protocol/index.js';
import { SockxferError } from '../../src/errors.js';
import { mulberry32, seededBytes as randomBytes, refCrc32c } from '../helpers/seeded.js';
import { expectError } from '../helpers/errors.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** Header bytes only: magic, version 2, type, flags, session 1, length. */
function header(type: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.writeUInt32BE(0x53584652, 0);
  b.writeUInt8(2, 4);
  b.writeUInt8(type, 5);
  b.writeUInt16BE(flags, 6);
  b.writeBigUInt64BE(1n, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/**
 * Compares decoded frames to what was sent. DATA payloads are compared as the concatenation of
 * their pieces (how a chunk is cut into pieces depends on how it arrived), with Buffer.equals (1 MiB).
 */
function expectSameFrames(actual: DecodedFrame[], expected: Array<{ frame: Frame; session: bigint; size: number }>): void {
  expect(actual.map((d) => d.frame.type)).toEqual(expected.map((e) => e.frame.type));
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    expect(a.session, `session of frame ${i}`).toBe(e.session);
    expect(a.size, `size of frame ${i}`).toBe(e.size);
    if (e.frame.type === 'data' && a.frame.type === 'data') {
      const { data: actualData, ...actualFields } = a.frame;
      const { data: expectedData, ...expectedFields } = e.frame;
      expect(actualFields, `fields of frame ${i}`).toEqual(expectedFields);
      const a1 = Buffer.concat(actualData);
      const e1 = Buffer.concat(expectedData);
      expect(a1.length, `data length of frame ${i}`).toBe(e1.length);
      expect(a1.equals(e1), `data bytes of frame ${i}`).toBe(true);
    } else {
      expect(a.frame, `frame ${i}`).toEqual(e.frame);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A stream of a whole small transfer, with a 1 MiB DATA frame in it.

const SESSION = 0x0102030405060708n;
const OTHER_SESSION = 0xfedcba9876543210n;
const BIG = randomBytes(1024 * 1024, 7);

const STREAM_FRAMES: Array<{ frame: Frame; session: bigint }> = [
  { frame: { type: 'hello', minVersion: 2, maxVersion: 2, capabilities: 0, software: 'sockxfer/0.1.0' }, session: SESSION },
  { frame: { type: 'welcome', version: 2, capabilities: 0, software: 'sockxfer/0.1.0' }, session: SESSION },
  {
    frame: {
      type: 'offer',
      chunkSize: 1024 * 1024,
      hash: 'xxh128',
      fileCount: 2,
      totalBytes: BIG.length + 5,
      more: true,
      entries: [{ index: 0, kind: 'file', name: 'big.bin', size: BIG.length, mode: 0o644, mtimeMs: 1_700_000_000_123 }],
    },
    session: SESSION,
  },
  {
    frame: {
      type: 'offer',
      chunkSize: 1024 * 1024,
      hash: 'xxh128',
      fileCount: 2,
      totalBytes: BIG.length + 5,
      more: false,
      entries: [{ index: 1, kind: 'file', name: 'dir/small ☃.txt', size: 5, mode: 0o600, mtimeMs: 0 }],
    },
    session: SESSION,
  },
  {
    frame: {
      type: 'accept',
      more: false,
      entries: [
        { index: 0, action: 'send', code: 0, message: '', digest: Buffer.alloc(0), have: [] },
        { index: 1, action: 'update', code: 0, message: '', digest: randomBytes(16, 4), have: [[0, 1]] },
      ],
    },
    session: SESSION,
  },
  { frame: { type: 'data', index: 0, chunk: 0, data: [BIG] }, session: SESSION },
  { frame: { type: 'end', index: 0, size: BIG.length, hash: 'xxh128', digest: randomBytes(16, 1), abandoned: false }, session: SESSION },
  { frame: { type: 'data', index: 1, chunk: 0, data: [Buffer.from('hello')] }, session: SESSION },
  { frame: { type: 'data', index: 1, chunk: 1, data: [Buffer.alloc(0)] }, session: SESSION },
  { frame: { type: 'end', index: 1, size: 5, hash: 'xxh128', digest: Buffer.alloc(0), abandoned: true }, session: SESSION },
  { frame: { type: 'verdict', index: 0, status: 'committed', code: 0, hash: 'xxh128', digest: randomBytes(16, 1), message: '', path: 'big (1).bin' }, session: SESSION },
  {
    frame: { type: 'verdict', index: 1, status: 'failed', code: 1000, hash: 'xxh128', digest: Buffer.alloc(0), message: 'the sender gave it up', path: '' },
    session: SESSION,
  },
  { frame: { type: 'refuse', code: 600, index: WHOLE_TRANSFER, message: 'no' }, session: OTHER_SESSION },
  { frame: { type: 'error', code: 900, message: 'bye' }, session: OTHER_SESSION },
];

const ENCODED = STREAM_FRAMES.map((f) => encodeFrameToBuffer(f.frame, f.session));
const STREAM = Buffer.concat(ENCODED);
const EXPECTED = STREAM_FRAMES.map((f, i) => ({ ...f, size: ENCODED[i]!.length }));
/** Stream offsets at which each frame is complete. */
const FRAME_ENDS = ENCODED.reduce<number[]>((ends, b) => [...ends, (ends.at(-1) ?? 0) + b.length], []);

/** Pushes `stream` in the given piece sizes (the last piece takes the rest) and returns all frames. */
function feed(deframer: StreamDeframer, stream: Buffer, sizes: Iterable<number>): DecodedFrame[] {
  const out: DecodedFrame[] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= stream.length) break;
    out.push(...deframer.push(stream.subarray(at, at + size)));
    at += size;
  }
  if (at < stream.length) out.push(...deframer.push(stream.subarray(at)));
  return out;
}

function* randomSizes(seed: number): Generator<number> {
  const rand = mulberry32(seed);
  for (;;) {
    const r = rand();
    // Mostly small pieces (headers split everywhere), sometimes large ones (spanning frames).
    if (r < 0.5) yield 1 + Math.floor(rand() * 32);
    else if (r < 0.8) yield 1 + Math.floor(rand() * 4096);
    else if (r < 0.95) yield 1 + Math.floor(rand() * 300_000);
    else yield 0;
  }
}

const IN_CHILD = process.env.SOCKXFER_DEFRAMER_CHILD === '1';
const ONE_BYTE_TEST = 'child: the whole stream, one byte at a time';

/** Runs one test of this file in a child vitest (one process, so one SIGKILL ends it all). */
function runInChild(testName: string, deadlineMs: number): Promise<{ exitCode: number | null; timedOut: boolean; output: string }> {
  const thisFile = fileURLToPath(import.meta.url);
  const root = path.resolve(path.dirname(thisFile), '../..');
  const vitest = path.join(path.dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  const env: NodeJS.ProcessEnv = { ...process.env, SOCKXFER_DEFRAMER_CHILD: '1' };
  for (const key of Object.keys(env)) if (key.startsWith('VITEST')) delete env[key];
  const escaped = testName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const child = spawn(
    process.execPath,
    [vitest, 'run', path.relative(root, thisFile), '-t', `^.*${escaped}$`, '--pool=threads', '--maxWorkers=1', '--reporter=default', '--no-color'],
    { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, deadlineMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (exitCode) => {
      clearTimeout(timer);
      resolve({ exitCode, timedOut, output: output.slice(-4000) });
    });
  });
}

// ---------------------------------------------------------------------------------------------

describe('StreamDeframer: whole frames out, however the stream is cut', () => {
  it('the test stream is what decodeFrame sees, frame after frame', () => {
    // Guards the fixture: decoding frame by frame gives the frames that were encoded.
    const decoded: DecodedFrame[] = [];
    let at = 0;
    while (at < STREAM.length) {
      const d = decodeFrame(STREAM.subarray(at));
      expect(d).not.toBeNull();
      decoded.push(d!);
      at += d!.size;
    }
    expectSameFrames(decoded, EXPECTED);
    expect(STREAM.length).toBeGreaterThan(1024 * 1024);
  });

  it('in one push: every frame, in order', () => {
    const d = new StreamDeframer();
    expectSameFrames(d.push(STREAM), EXPECTED);
    expect(d.bufferedBytes).toBe(0);
    expect(d.idle).toBe(true);
  });

  // The deframer runs synchronously, so a deframer that is quadratic in the number of pieces
  // (one per byte here: a million) would block this worker far past vitest's timeout. The test
  // therefore runs in a child vitest that is killed at a hard deadline; a linear deframer needs
  // well under a second of it.
  // Registered only where it runs, so neither run reports a skipped test.
  if (!IN_CHILD) it(
    'one byte at a time: each frame comes out on its last byte, bufferedBytes and idle track the partial frame',
    async () => {
      const result = await runInChild(ONE_BYTE_TEST, 60_000);
      expect(result.timedOut, `the child did not finish in 60 s (a linear deframer needs under a second): pushing a 1 MiB DATA frame one byte at a time is super-linear; its output:\n${result.output}`).toBe(false);
      expect(result.exitCode, `the child failed; its output:\n${result.output}`).toBe(0);
      // The child really ran the test, rather than filtering it out.
      expect(result.output).toMatch(/1 passed/);
    },
    90_000,
  );

  if (IN_CHILD) it(ONE_BYTE_TEST, () => {
    const d = new StreamDeframer();
    const out: DecodedFrame[] = [];
    const completedAt: number[] = [];
    let consumed = 0;
    for (let i = 0; i < STREAM.length; i++) {
      const frames = d.push(STREAM.subarray(i, i + 1));
      if (frames.length > 0) {
        expect(frames).toHaveLength(1);
        out.push(frames[0]!);
        completedAt.push(i + 1);
        consumed += frames[0]!.size;
      }
      // Checked on every byte, but only calls expect() on a mismatch: a million expect()s are slow.
      if (d.bufferedBytes !== i + 1 - consumed || d.idle !== (i + 1 === consumed)) {
        expect({ at: i, buffered: d.bufferedBytes, idle: d.idle }).toEqual({ at: i, buffered: i + 1 - consumed, idle: i + 1 === consumed });
      }
    }
    expect(completedAt).toEqual(FRAME_ENDS);
    expectSameFrames(out, EXPECTED);
    expect(d.idle).toBe(true);
    expect(d.error).toBeNull();
    // Trickled bytes are coalesced: the 1 MiB chunk is not a million one-byte pieces.
    const big = out[5]!.frame;
    if (big.type !== 'data') throw new Error(`frame 5 is ${big.type}`);
    expect(big.data.length).toBeLessThan(100);
  });

  it.each([1, 2, 42, 2024, 0xdeadbeef])('in seeded random pieces (seed %i)', (seed) => {
    const d = new StreamDeframer();
    expectSameFrames(feed(d, STREAM, randomSizes(seed)), EXPECTED);
    expect(d.bufferedBytes).toBe(0);
    expect(d.idle).toBe(true);
  });

  it('split in two at every offset of a stream of small frames', () => {
    const small = [0, 1, 2, 4, 6, 7, 11, 13].map((i) => EXPECTED[i]!);
    const stream = Buffer.concat(small.map((f) => encodeFrameToBuffer(f.frame, f.session)));
    for (let k = 0; k <= stream.length; k++) {
      const d = new StreamDeframer();
      const first = d.push(stream.subarray(0, k));
      const second = d.push(stream.subarray(k));
      expectSameFrames([...first, ...second], small);
      expect(d.idle).toBe(true);
    }
  });

  it('pieces of the caller are not modified, and a frame split across pieces is still whole', () => {
    const copy = Buffer.from(STREAM);
    const d = new StreamDeframer();
    expectSameFrames(feed(d, STREAM, randomSizes(99)), EXPECTED);
    expect(STREAM.equals(copy)).toBe(true);
  });
});

describe('StreamDeframer: DATA frames', () => {
  it('a chunk that arrived in large reads comes out as views of those reads, not a copy', () => {
    // Control frames in one push, then the 1 MiB DATA frame in 64 KiB reads (the last one a
    // little longer, so that no read is small enough to be coalesced), then the rest.
    const start = FRAME_ENDS[4]!;
    const end = FRAME_ENDS[5]!;
    const sizes = [start, ...Array<number>(15).fill(65536), end - start - 15 * 65536];
    expect(sizes.at(-1)).toBeGreaterThan(65536);
    const d = new StreamDeframer();
    const out = feed(d, STREAM, sizes);
    expectSameFrames(out, EXPECTED);
    const big = out[5]!.frame;
    if (big.type !== 'data') throw new Error(`frame 5 is ${big.type}`);
    expect(big.data.length).toBeGreaterThan(1);
    // Compared with ===: a failing toBe() would try to diff two 1 MiB ArrayBuffers.
    expect(big.data.every((piece) => piece.buffer === STREAM.buffer)).toBe(true);
    expect(Buffer.concat(big.data).equals(BIG)).toBe(true);
  });

  it('a small DATA frame split at every offset decodes, and any flipped body or trailer byte fails the checksum', () => {
    const frame = ENCODED[7]!; // data 'hello': 20 header + 12 fields + 5 bytes + 4 trailer
    for (let k = 0; k <= frame.length; k++) {
      const d = new StreamDeframer();
      expectSameFrames([...d.push(frame.subarray(0, k)), ...d.push(frame.subarray(k))], [EXPECTED[7]!]);
      for (let i = HEADER_SIZE; i < frame.length; i++) {
        const bad = Buffer.from(frame);
        bad[i]! ^= 0x04;
        const d2 = new StreamDeframer();
        expectError(
          () => {
            d2.push(bad.subarray(0, k));
            d2.push(bad.subarray(k));
          },
          'E_CHECKSUM',
          /^data frame failed its CRC32C check/,
        );
      }
    }
  });

  it('field checks still apply to a DATA frame gathered from pieces', () => {
    // Chunk index 2^53 with a valid CRC: the failure is the field check.
    const body = Buffer.from('00000000' + '0020000000000000' + 'aabbcc', 'hex');
    const head = header(6, body.length);
    const trailer = Buffer.alloc(4);
    trailer.writeUInt32BE(refCrc32c(Buffer.concat([head, body])));
    const frame = Buffer.concat([head, body, trailer]);
    for (const k of [1, 20, 25, 33, frame.length - 2]) {
      const d = new StreamDeframer();
      expect(d.push(frame.subarray(0, k))).toEqual([]);
      expectError(() => d.push(frame.subarray(k)), 'E_PROTOCOL', /chunk index is larger than 2\^53-1/);
    }
  });

  it('an empty chunk decodes to no bytes', () => {
    const d = new StreamDeframer();
    const [only] = d.push(ENCODED[8]!);
    expect(only?.frame.type).toBe('data');
    if (only?.frame.type !== 'data') return;
    expect(only.frame).toMatchObject({ index: 1, chunk: 1 });
    expect(Buffer.concat(only.frame.data).length).toBe(0);
  });
});

describe('StreamDeframer: bufferedBytes and idle', () => {
  it('a new deframer is idle with nothing buffered', () => {
    const d = new StreamDeframer();
    expect(d.bufferedBytes).toBe(0);
    expect(d.idle).toBe(true);
    expect(d.push(Buffer.alloc(0))).toEqual([]);
    expect(d.idle).toBe(true);
  });

  it('counts a partial header, a partial body, and the start of the next frame', () => {
    const [a, b] = [ENCODED[0]!, ENCODED[13]!];
    const d = new StreamDeframer();
    expect(d.push(a.subarray(0, 5))).toEqual([]);
    expect(d.bufferedBytes).toBe(5);
    expect(d.idle).toBe(false);
    expect(d.push(a.subarray(5, HEADER_SIZE + 2))).toEqual([]);
    expect(d.bufferedBytes).toBe(HEADER_SIZE + 2);
    expect(d.idle).toBe(false);
    expect(d.push(Buffer.alloc(0))).toEqual([]);
    expect(d.bufferedBytes).toBe(HEADER_SIZE + 2);
    const out = d.push(Buffer.concat([a.subarray(HEADER_SIZE + 2), b.subarray(0, 3)]));
    expectSameFrames(out, [EXPECTED[0]!]);
    expect(d.bufferedBytes).toBe(3);
    expect(d.idle).toBe(false);
    expectSameFrames(d.push(b.subarray(3)), [EXPECTED[13]!]);
    expect(d.bufferedBytes).toBe(0);
    expect(d.idle).toBe(true);
  });
});

describe('StreamDeframer: hostile or broken input', () => {
  it('refuses a data header claiming 0xFFFFFFFF bytes as soon as the header is in', () => {
    const d = new StreamDeframer();
    expect(d.push(header(6, 0xffffffff).subarray(0, HEADER_SIZE - 1))).toEqual([]);
    expectError(() => d.push(header(6, 0xffffffff).subarray(HEADER_SIZE - 1)), 'E_PROTOCOL', /over the limit/);
  });

  it('refuses an offer header claiming 1 MiB as soon as the header is in', () => {
    const d = new StreamDeframer();
    expectError(() => d.push(header(3, 1024 * 1024, 1)), 'E_PROTOCOL', /offer frame of 1048576 bytes is over the limit of 61440/);
  });

  it('setMaxData(1024) refuses a data frame with a 2000-byte chunk, header alone or whole', () => {
    const frame: Frame = { type: 'data', index: 0, chunk: 0, data: [randomBytes(2000, 5)] };
    const whole = encodeFrameToBuffer(frame, SESSION);

    const headerOnly = new StreamDeframer();
    headerOnly.setMaxData(1024);
    expectError(() => headerOnly.push(whole.subarray(0, HEADER_SIZE)), 'E_PROTOCOL', /data frame of 2012 bytes is over the limit of 1036/);

    const wholeFrame = new StreamDeframer();
    wholeFrame.setMaxData(1024);
    expectError(() => wholeFrame.push(whole), 'E_PROTOCOL', /over the limit of 1036/);

    // The same frame passes without the lower limit, and a 1024-byte chunk passes with it.
    expectSameFrames(new StreamDeframer().push(whole), [{ frame, session: SESSION, size: whole.length }]);
    const ok = new StreamDeframer();
    ok.setMaxData(1024);
    const fits: Frame = { type: 'data', index: 0, chunk: 1, data: [randomBytes(1024, 6)] };
    const fitsBuf = encodeFrameToBuffer(fits, SESSION);
    expectSameFrames(ok.push(fitsBuf), [{ frame: fits, session: SESSION, size: fitsBuf.length }]);
  });

  it('refuses a header with an unknown flag as soon as the header is in; the known flags wait for the body', () => {
    const end = new StreamDeframer();
    expect(end.push(header(7, 14, 0x0002).subarray(0, HEADER_SIZE - 1))).toEqual([]);
    expectError(() => end.push(header(7, 14, 0x0002).subarray(HEADER_SIZE - 1)), 'E_PROTOCOL', /^unknown flags 0x2 on a end frame$/);
    expectError(() => new StreamDeframer().push(header(5, 8, 0x0001)), 'E_PROTOCOL', /^unknown flags 0x1 on a refuse frame$/);
    for (const [type, flags] of [[3, 0x0001], [4, 0x0001], [7, 0x0001]] as const) {
      const d = new StreamDeframer();
      expect(d.push(header(type, 14, flags))).toEqual([]);
      expect(d.error).toBeNull();
      expect(d.bufferedBytes).toBe(HEADER_SIZE);
    }
  });

  it('a verdict header may announce up to 8192 bytes (room for a long path), not one more', () => {
    const ok = new StreamDeframer();
    expect(ok.push(header(8, 8192))).toEqual([]);
    expect(ok.error).toBeNull();
    expectError(() => new StreamDeframer().push(header(8, 8193)), 'E_PROTOCOL', /verdict frame of 8193 bytes is over the limit of 8192/);
  });

  it('a verdict with a 4,300-byte path comes out whole, however it is cut', () => {
    const frame: Frame = { type: 'verdict', index: 3, status: 'committed', code: 0, hash: 'sha256', digest: randomBytes(32, 8), message: '', path: `${'p/'.repeat(2000)}${'q'.repeat(300)}` };
    const buf = encodeFrameToBuffer(frame, SESSION);
    for (const seed of [3, 4]) {
      const d = new StreamDeframer();
      expectSameFrames(feed(d, buf, randomSizes(seed)), [{ frame, session: SESSION, size: buf.length }]);
      expect(d.idle).toBe(true);
    }
  });

  it('the constructor takes the same data limit', () => {
    const d = new StreamDeframer(1024);
    expectError(() => d.push(header(6, 12 + 1025)), 'E_PROTOCOL', /over the limit of 1036/);
  });

  it('a flipped byte in a frame split across pieces fails the checksum', () => {
    const bad = Buffer.from(STREAM);
    const at = FRAME_ENDS[4]! + HEADER_SIZE + 500_000; // inside the 1 MiB chunk
    bad[at]! ^= 0x10;
    const d = new StreamDeframer();
    // 64 KiB pieces: the 1 MiB frame is gathered from 17 of them before its CRC is checked.
    expectError(() => feed(d, bad, Array(64).fill(65536)), 'E_CHECKSUM', /^data frame failed its CRC32C check/);
  });

  it('frames from earlier pushes are delivered before a corrupt one throws', () => {
    const bad = Buffer.from(STREAM);
    bad[FRAME_ENDS[1]! + HEADER_SIZE]! ^= 0x01; // first body byte of the first offer
    const d = new StreamDeframer();
    expectSameFrames(d.push(bad.subarray(0, FRAME_ENDS[1]!)), EXPECTED.slice(0, 2));
    expectError(() => d.push(bad.subarray(FRAME_ENDS[1]!, FRAME_ENDS[2]!)), 'E_CHECKSUM', /^offer frame failed/);
  });

  it('after an error it keeps throwing the same error, whatever comes next', () => {
    const d = new StreamDeframer();
    const garbage = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = expectError(() => d.push(garbage), 'E_PROTOCOL', /bad magic/);
    for (const next of [ENCODED[0]!, Buffer.alloc(0), STREAM, garbage]) {
      let again: unknown;
      try {
        d.push(next);
      } catch (err) {
        again = err;
      }
      expect(again).toBe(first);
    }
  });

  it('a healthy deframer has no error', () => {
    const d = new StreamDeframer();
    expect(d.error).toBeNull();
    d.push(STREAM.subarray(0, FRAME_ENDS[2]! + 7));
    expect(d.error).toBeNull();
  });

  it('garbage alone throws, and error holds what was thrown', () => {
    const d = new StreamDeframer();
    const err = expectError(() => d.push(Buffer.from('not a frame at all, no')), 'E_PROTOCOL', /bad magic/);
    expect(d.error).toBe(err);
  });

  it('whole frames before the garbage in the same push are returned; error says what followed; the next push throws it', () => {
    const bad = Buffer.from(STREAM.subarray(0, FRAME_ENDS[2]!));
    bad[FRAME_ENDS[1]! + HEADER_SIZE]! ^= 0x01; // first body byte of the first offer
    const d = new StreamDeframer();
    expectSameFrames(d.push(bad), EXPECTED.slice(0, 2));
    expect(d.error).toBeInstanceOf(SockxferError);
    expect(d.error?.code).toBe('E_CHECKSUM');
    expect(d.error?.message).toMatch(/^offer frame failed/);
    let again: unknown;
    try {
      d.push(ENCODED[0]!);
    } catch (err) {
      again = err;
    }
    expect(again).toBe(d.error);
  });

  it('a hostile header after whole frames in the same push is reported the same way', () => {
    const d = new StreamDeframer();
    const out = d.push(Buffer.concat([ENCODED[0]!, ENCODED[13]!, header(6, 0xffffffff)]));
    expectSameFrames(out, [EXPECTED[0]!, EXPECTED[13]!]);
    expect(d.error?.code).toBe('E_PROTOCOL');
    expect(d.error?.message).toMatch(/over the limit/);
    expect(() => d.push(Buffer.alloc(0))).toThrow(d.error!);
  });

  it('a bad version or type is refused once 20 bytes are in, not before', () => {
    for (const version of [1, 3]) {
      const bad = header(1, 10);
      bad[4] = version;
      const d = new StreamDeframer();
      expect(d.push(bad.subarray(0, HEADER_SIZE - 1))).toEqual([]);
      expectError(() => d.push(bad.subarray(HEADER_SIZE - 1)), 'E_VERSION', new RegExp(`version ${version}\\b`));
    }

    const d2 = new StreamDeframer();
    expectError(() => d2.push(header(0x7f, 0)), 'E_PROTOCOL', /unknown frame type 127/);
  });
});
