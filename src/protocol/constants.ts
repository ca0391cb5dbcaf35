/** Wire constants of the sockxfer protocol. Changing any of these is a new protocol version. */

/** "SXFR": the first four bytes of every frame. */
export const MAGIC = 0x53584652;

/** The protocol version this build speaks. HELLO, WELCOME and ERROR keep their version-1 layout forever, so negotiation always works. */
export const PROTOCOL_VERSION = 2;
/** Version 1 (one file per transfer, no resume) is no longer spoken: its ACCEPT, END and VERDICT layouts differ. */
export const MIN_PROTOCOL_VERSION = 2;
export const MAX_PROTOCOL_VERSION = 2;

/** magic u32, version u8, type u8, flags u16, session u64, body length u32. */
export const HEADER_SIZE = 20;
/** CRC32C (Castagnoli) of header and body, big-endian. */
export const TRAILER_SIZE = 4;

/** DATA body before the chunk bytes: file index u32, chunk index u64. */
export const DATA_FIELDS_SIZE = 12;

export const MIN_CHUNK_SIZE = 512;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

/** Largest body of any frame but DATA; small enough to fit one UDP datagram. */
export const MAX_CONTROL_BODY = 60 * 1024;
/** Each component of an entry's path is at most this many UTF-8 bytes (NAME_MAX); the receiver enforces it. */
export const MAX_NAME_BYTES = 255;
/** An entry's whole relative path is at most this many UTF-8 bytes (PATH_MAX less the terminating NUL). */
export const MAX_PATH_BYTES = 4095;
/** Components of an entry's relative path. */
export const MAX_PATH_DEPTH = 128;
/**
 * What a name field may carry on the wire: more than PATH_MAX, so that a long name reaches the
 * receiver's name check and is refused as a bad name (E_BAD_NAME) rather than as a broken frame.
 */
export const MAX_WIRE_NAME_BYTES = 4096 + 256;
/** A per-entry refusal message in ACCEPT: short, so that a full ACCEPT frame still fits a datagram. */
export const MAX_ENTRY_MESSAGE_BYTES = 200;
export const MAX_MESSAGE_BYTES = 1024;
export const MAX_SOFTWARE_BYTES = 64;
export const MAX_HASH_BYTES = 64;
/** A nonce or proof of an AUTH frame (32 bytes each today). */
export const MAX_AUTH_FIELD_BYTES = 64;
/** Entries of one OFFER frame; larger offers continue in further OFFER frames. */
export const MAX_OFFER_ENTRIES = 200;
export const MAX_ACCEPT_RANGES = 1024;

/** Frame type numbers on the wire. */
export const FRAME_TYPE = {
  hello: 1,
  welcome: 2,
  offer: 3,
  accept: 4,
  refuse: 5,
  data: 6,
  end: 7,
  verdict: 8,
  error: 9,
  /** Key authentication (see secure.ts): only after a HELLO and a WELCOME that both carry CAP_KEY. */
  auth: 10,
} as const;

export type FrameTypeName = keyof typeof FRAME_TYPE;

export const FRAME_TYPE_NAME = new Map<number, FrameTypeName>(
  (Object.keys(FRAME_TYPE) as FrameTypeName[]).map((name) => [FRAME_TYPE[name], name]),
);

/** Header flag on OFFER and ACCEPT: more frames of the same kind follow for this transfer. */
export const FLAG_MORE = 0x0001;
/** Header flag on END: the sender gives this entry up (its source changed or vanished); the receiver discards it. */
export const FLAG_ABANDONED = 0x0001;

/** Whole-file hash algorithms, by wire number. */
export const HASH_ALGORITHMS = { xxh128: 1, sha256: 2 } as const;
export type HashAlgorithm = keyof typeof HASH_ALGORITHMS;
export const HASH_LENGTH: Record<HashAlgorithm, number> = { xxh128: 16, sha256: 32 };

/** Largest body per frame type, checked before any allocation. */
export function maxBodySize(type: FrameTypeName): number {
  switch (type) {
    case 'data':
      return DATA_FIELDS_SIZE + MAX_CHUNK_SIZE;
    case 'hello':
    case 'welcome':
    case 'end':
    case 'error':
    case 'refuse':
    case 'auth':
      return 2048;
    case 'verdict':
      return 8192;
    case 'offer':
    case 'accept':
      return MAX_CONTROL_BODY;
  }
}
