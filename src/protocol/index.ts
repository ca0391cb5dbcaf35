/** The sockxfer wire protocol: pure functions over Buffers, no I/O. */
export * from './constants.js';
export * from './crc32c.js';
export * from './frames.js';
export * from './codec.js';
export * from './deframer.js';
export * from './secure.js';
