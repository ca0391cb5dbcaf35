/** Sending and receiving files over any Transport. */
export { sendFile, DEFAULT_SEND_OPTIONS, type SendOptions } from './sender.js';
export { Receiver, type ReceiverOptions, type ReceiverObserver, type ListenAddress } from './receiver.js';
export type { TransferInfo, TransferResult, TransferObserver } from './events.js';
export { printableName } from './names.js';
export { VERSION } from './version.js';
export { xxh128Implementation } from './hash.js';
