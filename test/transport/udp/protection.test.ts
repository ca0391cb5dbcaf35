/**
 * Protected UDP packets (packet.ts protectPacket/unprotectPacket): every type that may be sealed
 * round-trips; the header is authenticated (session, packet number, type), so a packet moved to
 * another number or session, or sealed with another key, does not open; decodePacket sends a
 * protected datagram to its connection ('protected') and refuses the flag on handshake types.
 */
import { describe, expect, it } from 'vitest';
import { sessionKeys, transcriptHash } from '../../../src/protocol/index.js';
import {
  FLAG_PROTECTED,
  PACKET_HEADER_SIZE,
  PACKET_TRAILER_SIZE,
  PROTECTION_OVERHEAD,
  decodePacket,
  encodeDataPacket,
  encodePacket,
  protectPacket,
  unprotectPacket,
  type PacketBody,
} from '../../../src/transport/udp/packet.js';
import { hex } from '../../helpers/bytes.js';
import { refCrc32c, seededBytes } from '../../helpers/seeded.js';

const TH = transcriptHash(hex('01'), hex('02'), seededBytes(32, 1), seededBytes(32, 2));
const KEYS = sessionKeys(Buffer.from('sixteen bytes or more of key'), TH, 'sender');
const PEER = sessionKeys(Buffer.from('sixteen bytes or more of key'), TH, 'receiver');
const STRANGER = sessionKeys(Buffer.from('some other key, just as long'), TH, 'receiver');
const SESSION = 0x0123_4567_89ab_cdefn;

function fixCrc(buf: Buffer): Buffer {
  const out = Buffer.from(buf);
  out.writeUInt32BE(refCrc32c(out.subarray(0, out.length - PACKET_TRAILER_SIZE)), out.length - PACKET_TRAILER_SIZE);
  return out;
}

const SEALABLE: Array<Exclude<PacketBody, { type: 'data' }>> = [
  { type: 'stream', offset: 1234, bytes: seededBytes(700, 3) },
  { type: 'ack', largest: 99, ackDelayMicros: 250, maxData: 16 << 20, ranges: [{ start: 90, end: 99 }, { start: 10, end: 80 }] },
  { type: 'ping' },
  { type: 'close', code: 700, message: 'bye' },
];

describe('protected packets', () => {
  it.each(SEALABLE.map((b) => [b.type, b] as const))('%s: sealed, then opened by the peer, decodes to the same packet', (_type, body) => {
    const clear = encodePacket(SESSION, 42, body);
    const sealed = protectPacket(clear, KEYS.send);
    expect(sealed.length).toBe(clear.length + PROTECTION_OVERHEAD);
    expect(sealed.readUInt16BE(6)).toBe(FLAG_PROTECTED);
    // The header stays readable (the endpoint routes by it); the body does not.
    expect(sealed.subarray(0, 6).equals(clear.subarray(0, 6))).toBe(true);
    expect(sealed.subarray(8, PACKET_HEADER_SIZE).equals(clear.subarray(8, PACKET_HEADER_SIZE))).toBe(true);
    if (clear.length > PACKET_HEADER_SIZE + 8) expect(sealed.subarray(PACKET_HEADER_SIZE, clear.length - 4).equals(clear.subarray(PACKET_HEADER_SIZE, clear.length - 4))).toBe(false);
    // Its CRC is valid, so line corruption is still told apart from forgery.
    expect(sealed.readUInt32BE(sealed.length - 4)).toBe(refCrc32c(sealed.subarray(0, sealed.length - 4)));
    const d = decodePacket(sealed);
    expect(d).toEqual({ ok: false, reason: 'protected' });
    const opened = unprotectPacket(sealed, PEER.receive);
    expect(opened?.equals(clear)).toBe(true);
    expect(decodePacket(opened!)).toEqual(decodePacket(clear));
  });

  it('a DATA packet of 1400 chunk bytes round-trips', () => {
    const clear = encodeDataPacket(SESSION, 7, 3, 1, 9, seededBytes(1400, 4));
    expect(unprotectPacket(protectPacket(clear, KEYS.send), PEER.receive)?.equals(clear)).toBe(true);
  });

  it('does not open under another key, in the other direction, or with any header or body byte changed (CRC fixed up)', () => {
    const clear = encodePacket(SESSION, 42, { type: 'stream', offset: 0, bytes: seededBytes(100, 5) });
    const sealed = protectPacket(clear, KEYS.send);
    expect(unprotectPacket(sealed, STRANGER.receive)).toBeNull();
    expect(unprotectPacket(sealed, KEYS.receive)).toBeNull();
    for (let at = 0; at < sealed.length - PACKET_TRAILER_SIZE; at++) {
      if (at >= 4 && at < 8) continue; // version, type and flags: decodePacket's own checks (below)
      const bad = Buffer.from(sealed);
      bad[at]! ^= 0x01;
      expect(unprotectPacket(fixCrc(bad), PEER.receive), `byte ${at}`).toBeNull();
    }
  });

  it('a packet moved to another packet number or session does not open (the header is the AAD, the number the nonce)', () => {
    const sealed = protectPacket(encodePacket(SESSION, 42, { type: 'ping' }), KEYS.send);
    const renumbered = Buffer.from(sealed);
    renumbered.writeUInt32BE(43, 20);
    expect(unprotectPacket(fixCrc(renumbered), PEER.receive)).toBeNull();
    const moved = Buffer.from(sealed);
    moved.writeUInt32BE(0x01234568, 8);
    expect(unprotectPacket(fixCrc(moved), PEER.receive)).toBeNull();
  });

  it('the PROTECTED flag on INITIAL, RETRY or READY is malformed; a protected datagram too short for a tag does not open', () => {
    for (const body of [
      { type: 'initial', datagramSize: 1200, cookie: Buffer.alloc(0) },
      { type: 'retry', cookie: hex('0102') },
      { type: 'ready', window: 1 << 24, datagramSize: 1200 },
    ] as const) {
      const buf = encodePacket(SESSION, 0, body);
      buf.writeUInt16BE(FLAG_PROTECTED, 6);
      expect(decodePacket(fixCrc(buf))).toEqual({ ok: false, reason: 'malformed' });
    }
    const ping = encodePacket(SESSION, 1, { type: 'ping' });
    ping.writeUInt16BE(FLAG_PROTECTED, 6);
    const fixed = fixCrc(ping);
    expect(decodePacket(fixed)).toEqual({ ok: false, reason: 'protected' });
    expect(unprotectPacket(fixed, PEER.receive)).toBeNull();
  });
});
