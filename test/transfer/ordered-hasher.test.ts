/** OrderedHasher: chunks in any order hash like the file in order; early chunks are capped. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import { createHasher } from '../../src/transfer/hash.js';
import { MAX_HELD_BYTES, OrderedHasher } from '../../src/transfer/ordered-hasher.js';
import { mulberry32, seededBytes } from '../helpers/seeded.js';

/** Splits `data` into chunks of `size` (the last one shorter). */
function chunksOf(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) out.push(data.subarray(off, off + size));
  return out;
}

function shuffled<T>(items: T[], seed: number): T[] {
  const rand = mulberry32(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('OrderedHasher', () => {
  const data = seededBytes(100_003, 42);
  const chunks = chunksOf(data, 1000);
  const expected = createHash('sha256').update(data).digest();

  it('in order: the sha256 of the concatenation', async () => {
    const h = new OrderedHasher(await createHasher('sha256'));
    chunks.forEach((c, i) => h.add(i, [c], c.length));
    expect(h.hashedChunks).toBe(chunks.length);
    expect(h.digest().equals(expected)).toBe(true);
  });

  it.each([1, 2, 3])('shuffled (seed %i): the same digest as in order', async (seed) => {
    const h = new OrderedHasher(await createHasher('sha256'));
    const order = shuffled(
      chunks.map((_, i) => i),
      seed,
    );
    expect(order).not.toEqual(chunks.map((_, i) => i));
    for (const i of order) h.add(i, [chunks[i]!], chunks[i]!.length);
    expect(h.hashedChunks).toBe(chunks.length);
    expect(h.digest().toString('hex')).toBe(expected.toString('hex'));
  });

  it('reversed: nothing is hashed until chunk 0 arrives, then everything', async () => {
    const h = new OrderedHasher(await createHasher('sha256'));
    for (let i = chunks.length - 1; i >= 1; i--) h.add(i, [chunks[i]!], chunks[i]!.length);
    expect(h.hashedChunks).toBe(0);
    h.add(0, [chunks[0]!], chunks[0]!.length);
    expect(h.hashedChunks).toBe(chunks.length);
    expect(h.digest().equals(expected)).toBe(true);
  });

  it('a chunk given as several pieces hashes like the chunk in one piece', async () => {
    const h = new OrderedHasher(await createHasher('sha256'));
    // Chunks cut into uneven pieces (as the deframer hands them out), fed in reverse.
    for (let i = chunks.length - 1; i >= 0; i--) {
      const c = chunks[i]!;
      const cut = (i * 37) % (c.length + 1);
      h.add(i, [c.subarray(0, cut), c.subarray(cut, cut + 1), c.subarray(cut + 1)], c.length);
    }
    expect(h.digest().equals(expected)).toBe(true);
  });

  it('xxh128 of "abc" is the canonical XXH3-128 digest', async () => {
    const h = await createHasher('xxh128');
    h.update(Buffer.from('abc'));
    expect(h.digest().toString('hex')).toBe('06b05ab6733a618578af5f94892f3950');
  });

  it('xxh128 through the OrderedHasher, fed "abc" as three shuffled chunks', async () => {
    const h = new OrderedHasher(await createHasher('xxh128'));
    h.add(2, [Buffer.from('c')], 1);
    h.add(0, [Buffer.from('a')], 1);
    h.add(1, [Buffer.from('b')], 1);
    expect(h.digest().toString('hex')).toBe('06b05ab6733a618578af5f94892f3950');
  });

  it('holds exactly MAX_HELD_BYTES out of order, and refuses one byte more with E_PROTOCOL', async () => {
    const h = new OrderedHasher(await createHasher('sha256'));
    const mib = Buffer.alloc(1024 * 1024, 7);
    const heldChunks = MAX_HELD_BYTES / mib.length;
    expect(Number.isInteger(heldChunks)).toBe(true);
    for (let i = 1; i <= heldChunks; i++) h.add(i, [mib], mib.length);
    let thrown: unknown;
    try {
      h.add(heldChunks + 1, [Buffer.alloc(1)], 1);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SockxferError);
    expect((thrown as SockxferError).code).toBe('E_PROTOCOL');
    expect((thrown as SockxferError).message).toMatch(/chunk 65 arrived too far ahead of chunk 0/);
    // The chunk in order is never refused, and it releases everything held.
    h.add(0, [mib], mib.length);
    expect(h.hashedChunks).toBe(heldChunks + 1);
    const all = createHash('sha256');
    for (let i = 0; i <= heldChunks; i++) all.update(mib);
    expect(h.digest().equals(all.digest())).toBe(true);
  });
});
