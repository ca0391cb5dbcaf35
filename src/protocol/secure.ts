/**
 * Keys and encryption: the pure part (no I/O). Both transports use the same keys; TCP seals its
 * byte stream in records (RecordSealer, RecordOpener), UDP seals each packet (udp/packet.ts).
 *
 * A pre-shared key K (at least MIN_KEY_BYTES bytes, from a key file or SOCKXFER_KEY) never
 * travels. After HELLO and WELCOME, which both carry CAP_KEY:
 *
 *   receiver → AUTH (nonce Nr: 32 fresh random bytes)                       the challenge
 *   sender   → AUTH (nonce Ns: 32 fresh random bytes, proof Ps)             the sender proves first
 *   receiver → AUTH (proof Pr)                                              then the receiver
 *   … every frame from here on, both ways, is sealed with AES-256-GCM.
 *
 * th = SHA-256 over the HELLO and WELCOME bodies and both nonces (each length-prefixed): the
 * transcript, so a change to any of them (a version, a capability) breaks both proofs.
 * Everything is HKDF-SHA256(K, salt = th, info = label):
 *   Ps = HKDF("sockxfer proof sender"), Pr = HKDF("sockxfer proof receiver"), 32 bytes each,
 *   compared in constant time; per direction a 32-byte key and a 12-byte IV
 *   ("sockxfer sender key"/"… iv", "sockxfer receiver key"/"… iv").
 * Fresh nonces from both sides make every session's keys new, so nothing recorded from one
 * session (a proof, a record, a datagram) is worth anything in another. The sender proves first
 * so that a stranger who only connects learns nothing computed from K; the receiver proves before
 * the sender sends any metadata (its OFFER), so a sender never talks to an impostor.
 *
 * GCM nonces: IV XOR a 64-bit counter in its last 8 bytes. Over TCP the counter is the record's
 * number in its direction (so a dropped, repeated or reordered record fails to open); over UDP it
 * is the packet number, which is never reused (a retransmission is a new packet).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, timingSafeEqual } from 'node:crypto';
import { SockxferError } from '../errors.js';

export const CIPHER = 'aes-256-gcm';
export const TAG_SIZE = 16;
export const NONCE_SIZE = 32;
export const PROOF_SIZE = 32;
/** A key shorter than this is refused: 16 bytes of random is 128 bits, the floor for a key. */
export const MIN_KEY_BYTES = 16;
/** Capability bit of HELLO and WELCOME: this side holds a key and transfers only encrypted. */
export const CAP_KEY = 0x0000_0001;

/** One direction's AEAD key and IV. */
export interface DirectionKey {
  key: Buffer;
  iv: Buffer;
}

export interface SessionKeys {
  /** What this side seals with. */
  send: DirectionKey;
  /** What this side opens the peer's with. */
  receive: DirectionKey;
}

export type Role = 'sender' | 'receiver';

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

/** The transcript hash th over the HELLO and WELCOME bodies and both nonces. */
export function transcriptHash(helloBody: Buffer, welcomeBody: Buffer, receiverNonce: Buffer, senderNonce: Buffer): Buffer {
  const h = createHash('sha256');
  h.update('sockxfer handshake 2');
  for (const part of [helloBody, welcomeBody, receiverNonce, senderNonce]) {
    h.update(u32(part.length));
    h.update(part);
  }
  return h.digest();
}

function derive(key: Buffer, th: Buffer, label: string, length: number): Buffer {
  return Buffer.from(hkdfSync('sha256', key, th, label, length));
}

/** The proof `role` sends: HKDF(K, th, "sockxfer proof <role>"). */
export function proofOf(key: Buffer, th: Buffer, role: Role): Buffer {
  return derive(key, th, `sockxfer proof ${role}`, PROOF_SIZE);
}

/** Whether `proof` is what `role` holding `key` would send, compared in constant time. */
export function proofMatches(key: Buffer, th: Buffer, role: Role, proof: Buffer): boolean {
  const expected = proofOf(key, th, role);
  // timingSafeEqual needs equal lengths; a wrong length is no secret, the comparison still runs.
  return timingSafeEqual(expected, proof.length === PROOF_SIZE ? proof : Buffer.alloc(PROOF_SIZE)) && proof.length === PROOF_SIZE;
}

/** The session's keys as seen by `role`. */
export function sessionKeys(key: Buffer, th: Buffer, role: Role): SessionKeys {
  const direction = (from: Role): DirectionKey => ({ key: derive(key, th, `sockxfer ${from} key`, 32), iv: derive(key, th, `sockxfer ${from} iv`, 12) });
  const mine = direction(role);
  const theirs = direction(role === 'sender' ? 'receiver' : 'sender');
  return { send: mine, receive: theirs };
}

/** IV XOR counter (a u64 below 2^53 in the last 8 bytes). */
export function nonceFor(iv: Buffer, counter: number): Buffer {
  const n = Buffer.from(iv);
  const hi = Math.floor(counter / 0x1_0000_0000);
  const lo = counter >>> 0;
  n.writeUInt32BE((n.readUInt32BE(4) ^ hi) >>> 0, 4);
  n.writeUInt32BE((n.readUInt32BE(8) ^ lo) >>> 0, 8);
  return n;
}

/**
 * Seals `pieces` as one AEAD message: returns the ciphertext pieces followed by the tag.
 * `aad` is authenticated, not encrypted.
 */
export function seal(dk: DirectionKey, counter: number, aad: Buffer, pieces: readonly Buffer[]): Buffer[] {
  const cipher = createCipheriv(CIPHER, dk.key, nonceFor(dk.iv, counter), { authTagLength: TAG_SIZE });
  cipher.setAAD(aad);
  const out: Buffer[] = [];
  for (const p of pieces) if (p.length > 0) out.push(cipher.update(p));
  const last = cipher.final();
  if (last.length > 0) out.push(last);
  out.push(cipher.getAuthTag());
  return out;
}

/**
 * Opens an AEAD message given as ciphertext pieces and its tag; the plaintext pieces, or null
 * when it does not authenticate (wrong key, changed bytes, wrong counter). Nothing of a message
 * that fails is returned.
 */
export function open(dk: DirectionKey, counter: number, aad: Buffer, pieces: readonly Buffer[], tag: Buffer): Buffer[] | null {
  if (tag.length !== TAG_SIZE) return null;
  const decipher = createDecipheriv(CIPHER, dk.key, nonceFor(dk.iv, counter), { authTagLength: TAG_SIZE });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const out: Buffer[] = [];
  for (const p of pieces) if (p.length > 0) out.push(decipher.update(p));
  try {
    const last = decipher.final();
    if (last.length > 0) out.push(last);
  } catch {
    return null;
  }
  return out;
}

// ---- TCP records ------------------------------------------------------------------------------

/**
 * A record on an encrypted TCP stream: u32 length L (of what follows), then L bytes: the sealed
 * bytes of one or more whole frames and the 16-byte tag. The length is the AAD.
 */
export const RECORD_HEADER_SIZE = 4;

/** Seals outgoing frames into records, counting them for the nonces. */
export class RecordSealer {
  private counter = 0;

  constructor(private readonly dk: DirectionKey) {}

  /** The record for `pieces` (the encoded frames), as buffers to write in order. */
  seal(pieces: readonly Buffer[]): Buffer[] {
    let length = TAG_SIZE;
    for (const p of pieces) length += p.length;
    const header = u32(length);
    return [header, ...seal(this.dk, this.counter++, header, pieces)];
  }
}

/**
 * Opens the records of an incoming encrypted stream: bytes go in as they arrive, the plaintext
 * of each whole record that authenticates comes out. The length is checked against `maxRecord`
 * before any byte is gathered, and a record that fails to open throws: the stream is then broken
 * for good (the counter cannot be resynchronised, and must not be).
 */
export class RecordOpener {
  private counter = 0;
  private pieces: Buffer[] = [];
  private buffered = 0;
  private length = -1;

  constructor(
    private readonly dk: DirectionKey,
    private readonly maxRecord: number,
  ) {}

  /** True when no partial record is pending. */
  get idle(): boolean {
    return this.buffered === 0;
  }

  /** Plaintext of every record completed by `chunk`, in order. */
  push(chunk: Buffer): Buffer[] {
    this.pieces.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.length < 0) {
        if (this.buffered < RECORD_HEADER_SIZE) break;
        const header = this.take(RECORD_HEADER_SIZE);
        const length = (header.length === 1 ? header[0]! : Buffer.concat(header)).readUInt32BE(0);
        if (length < TAG_SIZE || length > this.maxRecord) {
          throw new SockxferError('E_PROTOCOL', `encrypted record of ${length} bytes is outside ${TAG_SIZE}-${this.maxRecord}`);
        }
        this.length = length;
      }
      if (this.buffered < this.length) break;
      const body = this.take(this.length - TAG_SIZE);
      const tagPieces = this.take(TAG_SIZE);
      const tag = tagPieces.length === 1 ? tagPieces[0]! : Buffer.concat(tagPieces);
      const plain = open(this.dk, this.counter++, u32(this.length), body, tag);
      if (plain === null) throw new SockxferError('E_AUTH', 'an encrypted record failed authentication (changed, replayed, reordered, or sealed with another key)');
      this.length = -1;
      out.push(...plain);
    }
    return out;
  }

  /** The next `n` buffered bytes, as views. */
  private take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const p = this.pieces[0]!;
      if (p.length <= need) {
        out.push(p);
        this.pieces.shift();
        need -= p.length;
      } else {
        out.push(p.subarray(0, need));
        this.pieces[0] = p.subarray(need);
        need = 0;
      }
    }
    this.buffered -= n;
    return out;
  }
}
