/** Sending and receiving files over any Transport. */
export { send, sendFile, DEFAULT_SEND_OPTIONS, type SendOptions, type SendObserver } from './sender.js';
export { Receiver, DEFAULT_MAX_SESSIONS, type ReceiverOptions, type ReceiverObserver, type ListenAddress } from './receiver.js';
export { DEFAULT_MAX_FILES } from './receive-session.js';
export type { EntryResult, TransferInfo, TransferResult, TransferObserver } from './events.js';
export type { OverwritePolicy } from './target.js';
export type { Skipped } from './sources.js';
export { printableName } from './names.js';
export { VERSION } from './version.js';
export { xxh128Implementation } from './hash.js';
