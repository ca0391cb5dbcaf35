/** Transports: how frames travel. The transfer layer uses only the Transport interface. */
export type { Transport, TransportKind } from './transport.js';
export { parseHostPort, parsePort, formatHostPort, type HostPort } from './address.js';
export { connectTcp, listenTcp, type TcpListener } from './tcp.js';
