/**
 * UDP sockets: the sender's connected socket (`connectUdp`) and the receiver's one socket that
 * serves every sender (`listenUdp`), told apart by address, port and session id.
 *
 * Handshake (RFC 9000 §8.1 in spirit): INITIAL → RETRY with a cookie (stateless: an HMAC of the
 * sender's address, port, session and the time) → INITIAL with the cookie → READY. Before the
 * cookie comes back the receiver keeps no state and answers with no more than 3× the bytes it
 * received, so a forged source address cannot turn it into an amplifier.
 */
import dgram from 'node:dgram';
import dns from 'node:dns/promises';
import net from 'node:net';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ERROR_CODES, SockxferError, codeFromWire, errnoToCode, toSockxferError } from '../../errors.js';
import { formatHostPort, type HostPort } from '../address.js';
import { BatchReceiver, BatchSender, type Source } from './batch.js';
import { DEFAULT_WINDOW, UdpConnection, type CongestionName } from './connection.js';
import {
  DEFAULT_DATAGRAM_SIZE,
  ETHERNET_DATAGRAM_SIZE,
  MAX_DATAGRAM_SIZE,
  MIN_DATAGRAM_SIZE,
  decodePacket,
  peekSession,
  encodePacket,
  type Packet,
} from './packet.js';

/** Kernel socket buffers asked for (Linux caps them at net.core.rmem_max / wmem_max). */
const SOCKET_BUFFER = 4 * 1024 * 1024;
/** First INITIAL retransmission; doubles each time until the connect timeout. */
const HANDSHAKE_RETRY_MS = 250;
/** How long a cookie stays valid. */
const COOKIE_LIFETIME_S = 30;
/** RFC 9000 §8.1: at most this many times the bytes received go to an address not yet validated. */
export const AMPLIFICATION_LIMIT = 3;
/**
 * Connections one listening socket serves at once: a backstop. The receiver holds fewer (its
 * pending, session and closing caps), and a connection leaves this table the moment it finishes
 * (destroy) or once its ERROR is acknowledged or its grace runs out (abort, at most a second).
 */
export const MAX_CONNECTIONS = 1024;

export interface UdpOptions {
  /** UDP payload bytes per datagram, or 'ethernet' for the largest that fits a 1500-byte frame (1472 IPv4, 1452 IPv6). */
  datagramSize: number | 'ethernet';
  cc: CongestionName;
  /** Cap on the sending rate, bytes per second (0: none). */
  rateLimit: number;
  /** This side holds a key: its packets will be protected (chunks leave room for the tag). */
  keyed?: boolean;
}

export const DEFAULT_UDP_OPTIONS: UdpOptions = { datagramSize: DEFAULT_DATAGRAM_SIZE, cc: 'rate', rateLimit: 0 };

function setBuffers(socket: dgram.Socket): void {
  try {
    socket.setRecvBufferSize(SOCKET_BUFFER);
    socket.setSendBufferSize(SOCKET_BUFFER);
  } catch {
    // Not allowed to grow them: pacing keeps bursts small anyway.
  }
}

/** How long closing a socket waits for datagrams still queued in Node (the kernel's buffer was full). */
const CLOSE_DRAIN_MS = 1000;

/**
 * Closes `socket` once every datagram handed to it has gone to the kernel. Closing drops what
 * Node still queues, and the last datagrams of a connection are its CLOSE: without them the
 * peer waits out its grace period (or its idle timeout) instead of finishing.
 */
function closeWhenSent(socket: dgram.Socket): Promise<void> {
  const deadline = performance.now() + CLOSE_DRAIN_MS;
  return new Promise((resolve) => {
    const attempt = () => {
      let queued = 0;
      try {
        queued = socket.getSendQueueCount();
      } catch {
        // not running any more
      }
      if (queued > 0 && performance.now() < deadline) {
        setTimeout(attempt, 2);
        return;
      }
      try {
        socket.close(() => resolve());
      } catch {
        resolve();
      }
    };
    attempt();
  });
}

function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function sendError(err: NodeJS.ErrnoException, where: string): SockxferError {
  if (err.code === 'EMSGSIZE') return new SockxferError('E_USAGE', `datagrams are too large for the path to ${where}; use a smaller --datagram-size`, { cause: err });
  if (err.code === 'ECONNREFUSED') return new SockxferError('E_CONNECTION_LOST', `${where} stopped answering over UDP (port unreachable)`, { cause: err });
  const code = (err.code ? errnoToCode(err.code) : undefined) ?? 'E_CONNECTION_LOST';
  return new SockxferError(code === 'E_INTERNAL' ? 'E_CONNECTION_LOST' : code, `UDP to ${where} failed: ${err.message}`, { cause: err });
}

/** Connects to a receiver over UDP: resolves once the handshake is done. */
export async function connectUdp(target: HostPort, options: UdpOptions & { timeoutMs: number; session: bigint; signal?: AbortSignal }): Promise<UdpConnection> {
  const where = formatHostPort(target.host, target.port);
  let address: { address: string; family: number };
  try {
    address = await dns.lookup(target.host);
  } catch (err) {
    throw new SockxferError('E_UNREACHABLE', `cannot connect to ${where}: no such host "${target.host}"`, { cause: err });
  }
  const family = address.family === 6 ? 'ipv6' : 'ipv4';
  const datagramSize = options.datagramSize === 'ethernet' ? ETHERNET_DATAGRAM_SIZE[family] : options.datagramSize;
  const socket = dgram.createSocket(family === 'ipv6' ? 'udp6' : 'udp4');
  const failed = (err: SockxferError) => {
    try {
      socket.close();
    } catch {
      // already closed
    }
    return err;
  };
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(target.port, address.address, () => {
        socket.removeListener('error', reject);
        resolve();
      });
    });
  } catch (err) {
    throw failed(sendError(err as NodeJS.ErrnoException, where));
  }
  setBuffers(socket);

  // The handshake.
  const { session } = options;
  const started = performance.now();
  const ready = await new Promise<{ peerWindow: number; peerDatagramSize: number; rtt: number | undefined }>((resolve, reject) => {
    let cookie = Buffer.alloc(0);
    let pn = 0;
    let sentAt = 0;
    let retransmitted = false;
    let delay = HANDSHAKE_RETRY_MS;
    let retry: NodeJS.Timeout | null = null;
    const deadline = setTimeout(() => finish(new SockxferError('E_TIMEOUT', `no answer from ${where} over UDP within ${options.timeoutMs / 1000} s (is sockxfer receive running there, with UDP?)`)), options.timeoutMs);
    const onAbort = () => finish(toSockxferError(options.signal?.reason, 'E_INTERRUPTED'));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const sendInitial = () => {
      sentAt = performance.now();
      socket.send(encodePacket(session, pn++, { type: 'initial', datagramSize, cookie }));
      if (retry) clearTimeout(retry);
      retry = setTimeout(() => {
        retransmitted = true;
        delay *= 2;
        sendInitial();
      }, delay);
    };
    const onMessage = (msg: Buffer) => {
      const d = decodePacket(msg);
      if (!d.ok || d.packet.session !== session) return;
      const body = d.packet.body;
      if (body.type === 'retry' && cookie.length === 0) {
        cookie = Buffer.from(body.cookie);
        retransmitted = false;
        delay = HANDSHAKE_RETRY_MS;
        sendInitial();
      } else if (body.type === 'ready') {
        finish(null, { peerWindow: body.window, peerDatagramSize: body.datagramSize, rtt: retransmitted ? undefined : performance.now() - sentAt });
      } else if (body.type === 'close' && body.code !== 0) {
        // Turned away before any connection exists (a full receiver): its code, not a timeout.
        // (The message is the peer's: output escapes it when it prints.)
        finish(new SockxferError(codeFromWire(body.code), `${where} refused the connection over UDP: ${body.message}`, { remote: true }));
      }
    };
    const onError = (err: NodeJS.ErrnoException) =>
      finish(
        err.code === 'ECONNREFUSED'
          ? new SockxferError('E_CONNECT_REFUSED', `cannot connect to ${where} over UDP: port unreachable (is sockxfer receive running there, with UDP?)`, { cause: err })
          : sendError(err, where),
      );
    function finish(err: SockxferError | null, value?: { peerWindow: number; peerDatagramSize: number; rtt: number | undefined }) {
      clearTimeout(deadline);
      if (retry) clearTimeout(retry);
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeListener('message', onMessage);
      socket.removeListener('error', onError);
      if (err) reject(err);
      else resolve(value!);
    }
    socket.on('message', onMessage);
    socket.on('error', onError);
    sendInitial();
  }).catch((err: SockxferError) => {
    throw failed(err);
  });

  const remote = formatHostPort(plainAddress(address.address), target.port);
  let closed = false;
  const batch = new BatchSender(socket, () => closed);
  const connection = new UdpConnection({
    session,
    remote,
    datagramSize,
    peerDatagramSize: datagramSize,
    peerWindow: ready.peerWindow,
    cc: options.cc,
    rateLimit: options.rateLimit,
    handshakeRtt: ready.rtt ?? Math.max(1, performance.now() - started),
    keyed: options.keyed,
    output: (packet) => {
      if (!closed) batch.send(packet);
    },
    sendQueueEmpty: () => batch.idle,
    io: () => batch.io,
    onFinished: () => {
      batch.flush();
      closed = true;
      return closeWhenSent(socket);
    },
  });
  socket.on('message', (msg: Buffer) => {
    const d = decodePacket(msg);
    if (!d.ok) {
      if (d.reason !== 'protected') connection.onCorrupt();
      else if (peekSession(msg) === session) connection.onProtected(msg);
    } else if (d.packet.session === session) connection.onPacket(d.packet, msg.length);
  });
  socket.on('error', (err: NodeJS.ErrnoException) => connection.onNetworkError(sendError(err, remote)));
  return connection;
}

export interface UdpListener {
  readonly host: string;
  readonly port: number;
  /** Stops taking new senders; the socket stays open for the connections in progress and closes after the last. */
  close(): Promise<void>;
  /** Connections in its table now (at most MAX_CONNECTIONS). */
  readonly connections: number;
}

/** The stateless cookie: 4 bytes of time (seconds), 16 bytes of HMAC over time, address, port and session. */
class CookieJar {
  private readonly secret = randomBytes(32);

  make(address: string, port: number, session: bigint, nowS = Math.floor(Date.now() / 1000)): Buffer {
    const time = Buffer.allocUnsafe(4);
    time.writeUInt32BE(nowS >>> 0);
    return Buffer.concat([time, this.mac(time, address, port, session)]);
  }

  check(cookie: Buffer, address: string, port: number, session: bigint, nowS = Math.floor(Date.now() / 1000)): boolean {
    if (cookie.length !== 20) return false;
    const time = cookie.subarray(0, 4);
    const age = nowS - time.readUInt32BE(0);
    if (age < -5 || age > COOKIE_LIFETIME_S) return false;
    return timingSafeEqual(cookie.subarray(4), this.mac(time, address, port, session));
  }

  private mac(time: Buffer, address: string, port: number, session: bigint): Buffer {
    const s = Buffer.allocUnsafe(10);
    s.writeBigUInt64BE(session, 0);
    s.writeUInt16BE(port, 8);
    return createHmac('sha256', this.secret).update(time).update(address).update(s).digest().subarray(0, 16);
  }
}

/**
 * Listens for senders on one UDP socket. Without a host: IPv6 and IPv4 on one dual-stack
 * socket, or IPv4 only where the machine has no IPv6.
 */
export async function listenUdp(where: { host?: string; port: number; keyed?: boolean }, onConnection: (connection: UdpConnection) => void): Promise<UdpListener> {
  const bind = (type: 'udp4' | 'udp6', host: string) =>
    new Promise<dgram.Socket>((resolve, reject) => {
      const socket = dgram.createSocket({ type, ipv6Only: false });
      socket.once('error', (err) => {
        socket.close();
        reject(err);
      });
      socket.bind({ port: where.port, address: host, exclusive: true }, () => {
        socket.removeAllListeners('error');
        resolve(socket);
      });
    });
  let socket: dgram.Socket;
  try {
    if (where.host !== undefined) {
      socket = await bind(net.isIPv6(where.host) ? 'udp6' : 'udp4', where.host);
    } else {
      try {
        socket = await bind('udp6', '::');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') throw err;
        socket = await bind('udp4', '0.0.0.0');
      }
    }
  } catch (err) {
    const e = toSockxferError(err, 'E_LISTEN');
    throw new SockxferError(e.code === 'E_UNREACHABLE' ? 'E_LISTEN' : e.code, `cannot listen on ${formatHostPort(where.host ?? '::', where.port)} (udp): ${(err as Error).message}`, { cause: err });
  }
  setBuffers(socket);

  const cookies = new CookieJar();
  /** Connections by the low 32 bits of their session (the first one to take a value; others go by `connections`). */
  const fast = new Map<number, { connection: UdpConnection; address: string; port: number; hi: number }>();
  const deliver = (connection: UdpConnection, packet: Packet | Buffer, size: number, lent: Buffer | undefined) => {
    try {
      if (Buffer.isBuffer(packet)) connection.onProtected(packet);
      else connection.onPacket(packet, size, false, lent);
    } catch (err) {
      // A bug must cost one transfer, never the receiver and every other sender it serves.
      connection.onNetworkError(new SockxferError('E_INTERNAL', `internal error handling a packet from ${connection.remote}: ${(err as Error).message}`, { cause: err }));
    }
  };
  const connections = new Map<string, UdpConnection>();
  /** The latest connection per address and port, to count corrupt datagrams against. */
  const byAddress = new Map<string, UdpConnection>();
  let accepting = true;
  let socketClosed = false;
  const closeSocket = () => {
    if (socketClosed) return;
    socketClosed = true;
    // Not at once: a send to an address resolves it on the next tick, and the last connection's
    // final ACK and CLOSE are such sends. Closing now would drop them.
    setImmediate(() => void closeWhenSent(socket));
  };
  const reply = (buf: Buffer, rinfo: Source) => {
    if (!socketClosed) socket.send(buf, rinfo.port, rinfo.address);
  };

  const onInitial = (packet: Packet, size: number, rinfo: Source, key: string, addressKey: string) => {
    const body = packet.body;
    if (body.type !== 'initial') return;
    const existing = connections.get(key);
    const peer = plainAddress(rinfo.address);
    if (existing === undefined) {
      if (!accepting) return;
      if (!cookies.check(body.cookie, peer, rinfo.port, packet.session)) {
        const retry = encodePacket(packet.session, 0, { type: 'retry', cookie: cookies.make(peer, rinfo.port, packet.session) });
        // The address is not validated yet: never answer with more than 3× what arrived.
        if (retry.length <= AMPLIFICATION_LIMIT * size) reply(retry, rinfo);
        return;
      }
      if (connections.size >= MAX_CONNECTIONS) {
        // The address is validated (its cookie came back): it may learn why, in one small CLOSE.
        reply(encodePacket(packet.session, 0, { type: 'close', code: ERROR_CODES.E_BUSY.wire, message: `this receiver serves ${MAX_CONNECTIONS} UDP connections at once already; try again later` }), rinfo);
        return;
      }
      const peerDatagramSize = Math.min(Math.max(body.datagramSize, MIN_DATAGRAM_SIZE), MAX_DATAGRAM_SIZE);
      const connection = new UdpConnection({
        session: packet.session,
        remote: formatHostPort(peer, rinfo.port),
        datagramSize: peerDatagramSize,
        peerDatagramSize,
        peerWindow: DEFAULT_WINDOW,
        cc: 'rate',
        rateLimit: 0,
        keyed: where.keyed,
        output: (packet) => {
          if (!socketClosed) socket.send(packet, rinfo.port, rinfo.address);
        },
        io: () => (batchIn.enabled ? 'recvmmsg' : 'dgram'),
        recycle: (datagram) => batchIn.recycle(datagram),
        onFinished: () => {
          connections.delete(key);
          const lo = Number(packet.session & 0xffffffffn);
          if (fast.get(lo)?.connection === connection) fast.delete(lo);
          if (byAddress.get(addressKey) === connection) byAddress.delete(addressKey);
          if (!accepting && connections.size === 0) closeSocket();
        },
      });
      connections.set(key, connection);
      byAddress.set(addressKey, connection);
      batchIn.expect(peerDatagramSize);
      const lo = Number(packet.session & 0xffffffffn);
      if (!fast.has(lo)) fast.set(lo, { connection, address: rinfo.address, port: rinfo.port, hi: Number(packet.session >> 32n) });
      reply(encodePacket(packet.session, 0, { type: 'ready', window: DEFAULT_WINDOW, datagramSize: peerDatagramSize }), rinfo);
      onConnection(connection);
      return;
    }
    // A repeated INITIAL: our READY was lost. The address is validated (the cookie came back).
    reply(encodePacket(packet.session, 0, { type: 'ready', window: DEFAULT_WINDOW, datagramSize: existing.maxChunkSize }), rinfo);
  };

  const batchIn = new BatchReceiver(socket);
  /** `lent`: msg is a buffer of batchIn's pool (a DATA frame hands it back when written). */
  const onDatagram = (msg: Buffer, rinfo: Source, lent: boolean) => {
    const d = decodePacket(msg);
    // Anything malformed, for an unknown session or over the limits is dropped without an answer.
    // A protected packet goes whole to its connection, which holds the keys to open it.
    if (!d.ok && d.reason !== 'protected') {
      byAddress.get(`${rinfo.address}|${rinfo.port}`)?.onCorrupt();
      return;
    }
    const what = d.ok ? d.packet : msg;
    if (!d.ok || d.packet.body.type !== 'initial') {
      // The common case, without building a string key: a session's low 32 bits, then a check of the rest.
      const f = fast.get(msg.readUInt32BE(12));
      if (f !== undefined && f.port === rinfo.port && f.hi === msg.readUInt32BE(8) && f.address === rinfo.address) {
        deliver(f.connection, what, msg.length, lent && d.ok ? msg : undefined);
        return;
      }
    }
    const addressKey = `${rinfo.address}|${rinfo.port}`;
    const key = `${addressKey}|${msg.toString('hex', 8, 16)}`;
    if (d.ok && d.packet.body.type === 'initial') {
      try {
        onInitial(d.packet, msg.length, rinfo, key, addressKey);
      } catch {
        // a malformed handshake costs nothing but itself
      }
      return;
    }
    const connection = connections.get(key);
    if (connection) deliver(connection, what, msg.length, lent && d.ok ? msg : undefined);
  };
  socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
    const own = batchIn.adopt(msg);
    if (own === null) onDatagram(msg, rinfo as Source, false);
    else onDatagram(own, { address: rinfo.address, family: rinfo.family, port: rinfo.port }, true);
    // The rest of what is waiting, many datagrams per system call (none while no sender is connected).
    if (connections.size > 0 && !socketClosed) batchIn.drain(onDatagram);
  });
  // Errors on an unconnected socket concern one datagram (an ICMP reply); the connection's own timers deal with a peer that is gone.
  socket.on('error', () => {});

  const address = socket.address();
  return {
    host: address.address,
    port: address.port,
    close: () => {
      accepting = false;
      if (connections.size === 0) closeSocket();
      return Promise.resolve();
    },
    get connections() {
      return connections.size;
    },
  };
}
