/** Transports: how frames travel. TCP leaves reliability to the kernel; UDP brings its own. */
export type { Transport, TransportKind, TransportStats } from './transport.js';
export { parseHostPort, parsePort, formatHostPort, type HostPort } from './address.js';
export { connectTcp, listenTcp, type TcpListener } from './tcp.js';
export { connectUdp, listenUdp, DEFAULT_UDP_OPTIONS, type UdpListener, type UdpOptions } from './udp/endpoint.js';
export type { CongestionName } from './udp/connection.js';
export { batching as udpBatching } from './udp/batch.js';
export { DEFAULT_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE, ETHERNET_DATAGRAM_SIZE } from './udp/packet.js';
