/**
 * A UDP relay that impairs what passes through it: clients send to the relay, the relay forwards
 * to the real receiver through the model in src/impair/model.ts, and replies come back the same
 * way through a second model. Tests and benchmarks put it between sockxfer's UDP sender and
 * receiver to get loss, delay, a bottleneck and so on, reproducibly from a seed.
 *
 * One listening socket faces the clients. Each client (address:port) gets its own upstream
 * socket connected to the target, so the target sees one peer per client and its replies can be
 * routed back. Deliveries wait in a min-heap by due time behind a single timer; anything
 * already due is sent at once, without waiting for the timer.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Impairment, type ImpairmentConfig, type ImpairmentStats } from './model.js';

/** Distinct clients served; datagrams from more are dropped (counted as droppedClients). */
const MAX_CLIENTS = 256;
/** Datagrams held for a client whose upstream socket is still connecting. */
const MAX_WAITING = 4096;
/** Socket buffers big enough that the relay is not itself the bottleneck (the kernel may cap them). */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export type Direction = 'forward' | 'backward';

export interface RelayOptions {
  /** Listen host, default '127.0.0.1' ('::1' listens on IPv6). */
  host?: string;
  /** Listen port, default 0 (any free port). */
  port?: number;
  /** Where the real receiver listens (an IP address). */
  target: { host: string; port: number };
  /** Client → target impairment; none by default. */
  forward?: ImpairmentConfig;
  /** Target → client impairment; none by default. */
  backward?: ImpairmentConfig;
  /** The forward model's seed; the backward model uses backwardSeed(seed). */
  seed: number;
  /** Runs before the model; return false to drop the datagram (counted as droppedFilter). */
  filter?: (direction: Direction, datagram: Buffer, now: number) => boolean;
  /** Clock (ms) for the filter, the models and the timer; default performance.now. */
  clock?: () => number;
}

/** A direction's model counters plus what the relay itself did. */
export interface RelayDirectionStats extends ImpairmentStats {
  /** Dropped by the filter hook (before the model, so not in `received`). */
  droppedFilter: number;
  /** Dropped because MAX_CLIENTS clients were already served (forward only; not in `received`). */
  droppedClients: number;
  /** Copies the socket accepted for sending. */
  sent: number;
  /** Send failures (e.g. ECONNREFUSED once the target is gone) and socket errors; never thrown. */
  sendErrors: number;
}

export interface RelayStats {
  forward: RelayDirectionStats;
  backward: RelayDirectionStats;
  /** Distinct clients seen. */
  clients: number;
}

export interface Relay {
  /** Where clients send: the listening address and port. */
  host: string;
  port: number;
  /** A snapshot of the counters. */
  stats(): RelayStats;
  /** Clears the timer, drops what is still scheduled and closes every socket. Idempotent. */
  close(): Promise<void>;
}

/** The backward model's seed: a fixed scramble of the forward seed (golden-ratio xor). */
export function backwardSeed(seed: number): number {
  return (seed ^ 0x9e3779b9) >>> 0;
}

/** A scheduled send. `seq` keeps copies due at the same time in arrival order. */
interface Scheduled {
  at: number;
  seq: number;
  data: Buffer;
  direction: Direction;
  client: Client;
}

interface Client {
  address: string;
  port: number;
  upstream: dgram.Socket;
  connected: boolean;
  /** Forward datagrams due before the upstream socket finished connecting. */
  waiting: Buffer[];
}

/** A binary min-heap on (at, seq). */
class DueHeap {
  private readonly items: Scheduled[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): Scheduled | undefined {
    return this.items[0];
  }

  push(item: Scheduled): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, a[parent]!)) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = item;
  }

  pop(): Scheduled | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const child = r < a.length && before(a[r]!, a[l]!) ? r : l;
      if (!before(a[child]!, last)) break;
      a[i] = a[child]!;
      i = child;
    }
    a[i] = last;
    return top;
  }

  clear(): void {
    this.items.length = 0;
  }
}

function before(x: Scheduled, y: Scheduled): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

function emptyStats(model: Impairment): RelayDirectionStats {
  return { ...model.stats, droppedFilter: 0, droppedClients: 0, sent: 0, sendErrors: 0 };
}

function familyOf(host: string): 'udp4' | 'udp6' {
  return isIPv6(host) ? 'udp6' : 'udp4';
}

function setBuffers(socket: dgram.Socket): void {
  try {
    socket.setRecvBufferSize(SOCKET_BUFFER_BYTES);
    socket.setSendBufferSize(SOCKET_BUFFER_BYTES);
  } catch {
    /* the kernel refused; its default will do */
  }
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // not running (already closed)
    }
  });
}

/** Starts a relay listening on host:port (default 127.0.0.1, any free port). */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  const host = options.host ?? '127.0.0.1';
  const clock = options.clock ?? (() => performance.now());
  const { target, filter } = options;
  const models: Record<Direction, Impairment> = {
    forward: new Impairment(options.forward ?? {}, options.seed),
    backward: new Impairment(options.backward ?? {}, backwardSeed(options.seed)),
  };
  const extra: Record<Direction, RelayDirectionStats> = { forward: emptyStats(models.forward), backward: emptyStats(models.backward) };
  const clients = new Map<string, Client>();
  const heap = new DueHeap();
  let seq = 0;
  let timer: NodeJS.Timeout | null = null;
  let timerAt = Infinity;
  let closed = false;

  const listener = dgram.createSocket({ type: familyOf(host) });
  listener.on('error', () => extra.backward.sendErrors++);
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.bind({ address: host, port: options.port ?? 0, exclusive: true }, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await closeSocket(listener);
    throw err;
  }
  setBuffers(listener);
  const port = listener.address().port;

  /** Sends one copy now. */
  const send = (item: Scheduled): void => {
    const stats = extra[item.direction];
    const done = (err: Error | null) => {
      if (err) stats.sendErrors++;
      else stats.sent++;
    };
    try {
      if (item.direction === 'backward') {
        listener.send(item.data, item.client.port, item.client.address, done);
      } else if (item.client.connected) {
        item.client.upstream.send(item.data, done);
      } else if (item.client.waiting.length < MAX_WAITING) {
        item.client.waiting.push(item.data);
      } else {
        stats.sendErrors++;
      }
    } catch {
      stats.sendErrors++; // the socket is closing
    }
  };

  /** Sends everything due by the clock, then re-arms the timer for the earliest remaining item. */
  const flush = (): void => {
    if (closed) return;
    const now = clock();
    for (let next = heap.peek(); next !== undefined && next.at <= now; next = heap.peek()) send(heap.pop()!);
    const next = heap.peek();
    if (next === undefined) {
      if (timer) clearTimeout(timer);
      timer = null;
      timerAt = Infinity;
    } else if (next.at < timerAt || timer === null) {
      if (timer) clearTimeout(timer);
      timerAt = next.at;
      // At least 1 ms: Node timers have 1 ms granularity, and may wake a little early by this
      // clock; flush() then just re-arms.
      timer = setTimeout(onTimer, Math.max(1, Math.ceil(next.at - now)));
    }
  };
  const onTimer = (): void => {
    timer = null;
    timerAt = Infinity;
    flush();
  };

  /** One datagram in either direction: filter, model, schedule, send what is due. */
  const arrive = (direction: Direction, client: Client, datagram: Buffer): void => {
    if (closed) return;
    const now = clock();
    if (filter && !filter(direction, datagram, now)) {
      extra[direction].droppedFilter++;
      return;
    }
    for (const d of models[direction].admit(datagram, now)) heap.push({ at: d.at, seq: seq++, data: d.data, direction, client });
    flush();
  };

  const clientFor = (address: string, clientPort: number): Client | null => {
    const key = `${address}|${clientPort}`;
    const known = clients.get(key);
    if (known) return known;
    if (clients.size >= MAX_CLIENTS) return null;
    const family = familyOf(target.host);
    const upstream = dgram.createSocket({ type: family });
    const client: Client = { address, port: clientPort, upstream, connected: false, waiting: [] };
    clients.set(key, client);
    upstream.on('error', () => extra.forward.sendErrors++);
    upstream.on('message', (msg) => arrive('backward', client, msg));
    // Bind to loopback when the target is loopback: the relay never listens wider than it must.
    const loopback = target.host === '::1' || target.host.startsWith('127.');
    const bindAddress = loopback ? (family === 'udp6' ? '::1' : '127.0.0.1') : undefined;
    upstream.bind({ port: 0, address: bindAddress }, () => {
      if (closed) return;
      setBuffers(upstream);
      upstream.connect(target.port, target.host, (err?: Error) => {
        if (closed) return;
        if (err) {
          extra.forward.sendErrors += client.waiting.length;
          client.waiting = [];
          return;
        }
        client.connected = true;
        const waiting = client.waiting;
        client.waiting = [];
        for (const data of waiting) send({ at: 0, seq: 0, data, direction: 'forward', client });
      });
    });
    return client;
  };

  listener.on('message', (msg, rinfo) => {
    if (closed) return;
    const client = clientFor(rinfo.address, rinfo.port);
    if (client === null) {
      extra.forward.droppedClients++;
      return;
    }
    arrive('forward', client, msg);
  });

  const snapshot = (direction: Direction): RelayDirectionStats => {
    const e = extra[direction];
    return { ...models[direction].stats, droppedFilter: e.droppedFilter, droppedClients: e.droppedClients, sent: e.sent, sendErrors: e.sendErrors };
  };

  let closing: Promise<void> | null = null;
  return {
    host,
    port,
    stats: () => ({ forward: snapshot('forward'), backward: snapshot('backward'), clients: clients.size }),
    close: () => {
      closing ??= (async () => {
        closed = true;
        if (timer) clearTimeout(timer);
        timer = null;
        heap.clear();
        await Promise.all([closeSocket(listener), ...[...clients.values()].map((c) => closeSocket(c.upstream))]);
      })();
      return closing;
    },
  };
}
