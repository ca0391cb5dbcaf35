/**
 * Keys and sealing (src/protocol/secure.ts): the proofs and keys both sides derive, the AEAD
 * nonces, and the TCP record layer against every way a record can be changed, cut, repeated or
 * reordered. The AES-GCM known-answer test pins the cipher to the standard (NIST GCM test vector).
 */
import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import {
  PROOF_SIZE,
  RECORD_HEADER_SIZE,
  RecordOpener,
  RecordSealer,
  TAG_SIZE,
  nonceFor,
  open,
  proofMatches,
  proofOf,
  seal,
  sessionKeys,
  transcriptHash,
} from '../../src/protocol/index.js';
import { hex } from '../helpers/bytes.js';
import { mulberry32, seededBytes } from '../helpers/seeded.js';

const KEY = Buffer.from('a key of at least sixteen bytes');
const OTHER = Buffer.from('another key, also long enough');
const TH = transcriptHash(hex('0102'), hex('0304'), seededBytes(32, 1), seededBytes(32, 2));

describe('transcript, proofs and session keys', () => {
  it('the transcript hash changes with any of its inputs, and with where one ends and the next starts', () => {
    const parts = [hex('0102'), hex('0304'), seededBytes(32, 1), seededBytes(32, 2)] as const;
    const base = transcriptHash(...parts).toString('hex');
    for (let i = 0; i < 4; i++) {
      const changed = parts.map((p, j) => (j === i ? Buffer.concat([p, hex('00')]) : p)) as unknown as typeof parts;
      expect(transcriptHash(...changed).toString('hex')).not.toBe(base);
    }
    // The same bytes split differently between HELLO and WELCOME: another transcript.
    expect(transcriptHash(hex('010203'), hex('04'), parts[2], parts[3]).toString('hex')).not.toBe(base);
  });

  it('a proof matches only for the same key, transcript and role, and only at its full length', () => {
    const proof = proofOf(KEY, TH, 'sender');
    expect(proof.length).toBe(PROOF_SIZE);
    expect(proofMatches(KEY, TH, 'sender', proof)).toBe(true);
    expect(proofMatches(OTHER, TH, 'sender', proof)).toBe(false);
    expect(proofMatches(KEY, transcriptHash(hex('01'), hex('02'), hex('03'), hex('04')), 'sender', proof)).toBe(false);
    // A receiver's proof is not a sender's: a proof cannot be reflected back.
    expect(proofMatches(KEY, TH, 'receiver', proof)).toBe(false);
    expect(proofMatches(KEY, TH, 'sender', proof.subarray(0, 16))).toBe(false);
    expect(proofMatches(KEY, TH, 'sender', Buffer.alloc(0))).toBe(false);
    expect(proofMatches(KEY, TH, 'sender', Buffer.concat([proof, hex('00')]))).toBe(false);
  });

  it("each side's send key is the other's receive key; the two directions differ", () => {
    const s = sessionKeys(KEY, TH, 'sender');
    const r = sessionKeys(KEY, TH, 'receiver');
    expect(s.send.key.equals(r.receive.key) && s.send.iv.equals(r.receive.iv)).toBe(true);
    expect(r.send.key.equals(s.receive.key) && r.send.iv.equals(s.receive.iv)).toBe(true);
    expect(s.send.key.equals(s.receive.key)).toBe(false);
    expect(s.send.key.length).toBe(32);
    expect(s.send.iv.length).toBe(12);
    // Another session (another transcript): other keys.
    const other = sessionKeys(KEY, transcriptHash(hex('0102'), hex('0304'), seededBytes(32, 3), seededBytes(32, 2)), 'sender');
    expect(other.send.key.equals(s.send.key)).toBe(false);
  });

  it('nonces: counter 0 is the IV; the counter is XORed into the last 8 bytes, big-endian', () => {
    const iv = hex('000102030405060708090a0b');
    expect(nonceFor(iv, 0).toString('hex')).toBe('000102030405060708090a0b');
    expect(nonceFor(iv, 1).toString('hex')).toBe('000102030405060708090a0a');
    expect(nonceFor(iv, 0x1_0000_0000).toString('hex')).toBe('000102030405060608090a0b');
    expect(nonceFor(iv, 2 ** 53 - 1).toString('hex')).toBe('00010203041af9f8f7f6f5f4');
    const seen = new Set<string>();
    for (let c = 0; c < 1000; c++) seen.add(nonceFor(iv, c).toString('hex'));
    expect(seen.size).toBe(1000);
  });
});

describe('seal and open', () => {
  it('AES-256-GCM known answer (NIST GCM test case 16: 256-bit key, AAD)', () => {
    const key = hex('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308');
    const iv = hex('cafebabefacedbaddecaf888');
    const plain = hex(
      'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
    );
    const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
    const out = seal({ key, iv }, 0, aad, [plain.subarray(0, 7), plain.subarray(7)]);
    const joined = Buffer.concat(out);
    expect(joined.subarray(0, plain.length).toString('hex')).toBe(
      '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    );
    expect(joined.subarray(plain.length).toString('hex')).toBe('76fc6ece0f4e1768cddf8853bb2d551b');
    // And node's cipher agrees on the same input in one piece.
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(aad);
    expect(Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]).equals(joined)).toBe(true);
  });

  it('opens what it sealed; another counter, key, AAD, byte or tag: null', () => {
    const dk = sessionKeys(KEY, TH, 'sender').send;
    const aad = hex('aabbccdd');
    const data = seededBytes(3000, 5);
    const sealed = seal(dk, 7, aad, [data.subarray(0, 1000), data.subarray(1000)]);
    const tag = sealed.pop()!;
    const body = Buffer.concat(sealed);
    expect(Buffer.concat(open(dk, 7, aad, [body], tag)!).equals(data)).toBe(true);
    expect(open(dk, 8, aad, [body], tag)).toBeNull();
    expect(open(sessionKeys(OTHER, TH, 'sender').send, 7, aad, [body], tag)).toBeNull();
    expect(open(dk, 7, hex('aabbccde'), [body], tag)).toBeNull();
    const flipped = Buffer.from(body);
    flipped[1234]! ^= 0x01;
    expect(open(dk, 7, aad, [flipped], tag)).toBeNull();
    const badTag = Buffer.from(tag);
    badTag[15]! ^= 0x80;
    expect(open(dk, 7, aad, [body], badTag)).toBeNull();
    expect(open(dk, 7, aad, [body], tag.subarray(0, 12))).toBeNull();
  });
});

describe('TCP records', () => {
  const keys = () => ({ s: sessionKeys(KEY, TH, 'sender'), r: sessionKeys(KEY, TH, 'receiver') });

  function records(count: number, seed: number): { wire: Buffer; plain: Buffer[] } {
    const { s } = keys();
    const sealer = new RecordSealer(s.send);
    const rand = mulberry32(seed);
    const plain: Buffer[] = [];
    const parts: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const p = seededBytes(Math.floor(rand() * 5000), seed + i);
      plain.push(p);
      // A frame is often several pieces (header, chunk pieces, trailer).
      parts.push(...sealer.seal([p.subarray(0, 3), p.subarray(3)]));
    }
    return { wire: Buffer.concat(parts), plain };
  }

  it('round trip: 40 records of 0-5000 bytes, delivered in seeded random cuts down to single bytes', () => {
    for (const seed of [1, 2, 3]) {
      const { wire, plain } = records(40, seed * 100);
      const opener = new RecordOpener(keys().r.receive, 1 << 20);
      const rand = mulberry32(seed);
      const out: Buffer[] = [];
      for (let at = 0; at < wire.length; ) {
        const n = 1 + Math.floor(rand() * (rand() < 0.2 ? 3 : 4000));
        out.push(...opener.push(wire.subarray(at, at + n)));
        at += n;
      }
      expect(Buffer.concat(out).equals(Buffer.concat(plain))).toBe(true);
      expect(opener.idle).toBe(true);
    }
  });

  it('the record layout: u32 length (ciphertext + tag), ciphertext, tag', () => {
    const { s } = keys();
    const parts = new RecordSealer(s.send).seal([hex('0102030405')]);
    const wire = Buffer.concat(parts);
    expect(wire.length).toBe(RECORD_HEADER_SIZE + 5 + TAG_SIZE);
    expect(wire.readUInt32BE(0)).toBe(5 + TAG_SIZE);
    expect(wire.subarray(4, 9).equals(hex('0102030405'))).toBe(false); // encrypted
  });

  function openAll(wire: Buffer, receive = keys().r.receive): Buffer[] {
    return new RecordOpener(receive, 1 << 20).push(wire);
  }

  function expectAuthFailure(wire: Buffer, receive = keys().r.receive): void {
    let thrown: unknown;
    try {
      openAll(wire, receive);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SockxferError);
    expect((thrown as SockxferError).code).toBe('E_AUTH');
  }

  it('any one flipped bit in a record (length, ciphertext or tag) fails it', () => {
    const { wire } = records(1, 7);
    for (let bit = 0; bit < wire.length * 8; bit += 97) {
      const bad = Buffer.from(wire);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      let code: string | null = null;
      try {
        const out = openAll(bad);
        // A changed length may leave the record incomplete (nothing out yet) — never plaintext.
        expect(out).toEqual([]);
      } catch (err) {
        code = (err as SockxferError).code;
      }
      if (code !== null) expect(['E_AUTH', 'E_PROTOCOL']).toContain(code);
    }
  });

  it('a repeated record fails, and so do records swapped or one left out', () => {
    const { s } = keys();
    const sealer = new RecordSealer(s.send);
    const [a, b, c] = [hex('aa'), hex('bb'), hex('cc')].map((p) => Buffer.concat(sealer.seal([p])));
    expect(Buffer.concat(openAll(Buffer.concat([a!, b!, c!]))).toString('hex')).toBe('aabbcc');
    expectAuthFailure(Buffer.concat([a!, a!]));
    expectAuthFailure(Buffer.concat([b!, a!]));
    expectAuthFailure(Buffer.concat([a!, c!]));
  });

  it("a record sealed with another key, or in the other direction, fails", () => {
    const { wire } = records(1, 9);
    expectAuthFailure(wire, sessionKeys(OTHER, TH, 'receiver').receive);
    // The sender's own send key opened as if it came from the receiver: the directions differ.
    expectAuthFailure(wire, keys().s.receive);
  });

  it('a length over the limit, or shorter than a tag, is refused from the 4 length bytes alone', () => {
    const opener = new RecordOpener(keys().r.receive, 1000);
    expect(() => opener.push(hex('000003e9'))).toThrowError(/1001 bytes is outside 16-1000/);
    expect(() => new RecordOpener(keys().r.receive, 1000).push(hex('0000000f'))).toThrowError(/15 bytes is outside/);
    expect(() => new RecordOpener(keys().r.receive, 1 << 20).push(hex('ffffffff'))).toThrowError(/4294967295 bytes is outside/);
  });
});
