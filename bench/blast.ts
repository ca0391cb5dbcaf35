/**
 * A raw Node datagram blast: the ceiling for what Node's dgram can move over loopback, with no
 * reliability layer at all. Two modes, each its own process (run.ts spawns them):
 *
 *   node dist/bench/blast.js recv [--host 127.0.0.1] [--port 0] --expect N [--rcvbuf 4M]
 *        [--idle-ms 500] [--max-seconds 60]
 *     Binds a udp4 socket (SO_RCVBUF via setRecvBufferSize), prints
 *     {"event":"listening","host":..,"port":..,"rcvbuf":..} and counts datagrams and bytes and
 *     the time from the first datagram to the last. Ends when N datagrams arrived, after
 *     --idle-ms without one (once the first came), after --max-seconds, on SIGTERM/SIGINT or at
 *     the end of stdin (when stdin is a pipe); then prints
 *     {"event":"received","datagrams":..,"bytes":..,"seconds":..,"bytesPerSecond":..,"ended":..}
 *     and exits 0.
 *
 *   node dist/bench/blast.js send --port P [--host 127.0.0.1] --count N [--size 1472]
 *        [--yield-every 64] [--max-in-flight 4096] [--max-seconds 60]
 *     Connects a udp4 socket to HOST:P and sends N datagrams of --size bytes as fast as it can:
 *     a tight loop of socket.send(), yielding to the event loop (setImmediate) every
 *     --yield-every sends so libuv can flush what it queued and run the send callbacks, and
 *     also whenever more than --max-in-flight sends are still queued. Stops after N or after
 *     --max-seconds, waits (within --max-seconds) for every send to complete, then prints
 *     {"event":"sent","datagrams":..,"bytes":..,"errors":..,"seconds":..,"bytesPerSecond":..}
 *     and exits 0.
 *
 * Bad arguments: a message on stderr, exit 2. Both only ever talk to the address given
 * (127.0.0.1 by default).
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

function usage(message: string): never {
  process.stderr.write(
    `blast: ${message}\n` +
      'usage: blast recv [--host H] [--port P] --expect N [--rcvbuf BYTES] [--idle-ms MS] [--max-seconds S]\n' +
      '       blast send --port P [--host H] --count N [--size BYTES] [--yield-every N] [--max-in-flight N] [--max-seconds S]\n',
  );
  process.exit(2);
}

function parseFlags(argv: string[], allowed: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!allowed.includes(flag)) usage(`unknown option ${flag}`);
    if (value === undefined) usage(`${flag} needs a value`);
    flags.set(flag, value);
  }
  return flags;
}

function int(flags: Map<string, string>, name: string, min: number, max: number, fallback?: number): number {
  const text = flags.get(name);
  if (text === undefined) {
    if (fallback === undefined) usage(`${name} is required`);
    return fallback;
  }
  const m = /^(\d+)([kKmM]?)$/.exec(text);
  const n = m ? Number(m[1]) * ({ '': 1, k: 1024, m: 1024 * 1024 }[m[2]!.toLowerCase() as '' | 'k' | 'm']) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) usage(`${name}: expected a whole number from ${min} to ${max}, got "${text}"`);
  return n;
}

function line(event: string, fields: Record<string, unknown>): Promise<void> {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`, () => resolve()));
}

/** Calls `stop` when stdin (if it is a pipe) ends: the parent went away. */
function stopOnStdinEnd(stop: () => void): void {
  let st: fs.Stats | null = null;
  try {
    st = fs.fstatSync(0);
  } catch {
    return;
  }
  if (st.isFIFO() || st.isSocket()) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

// ---------------------------------------------------------------------------------------------

async function recv(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, ['--host', '--port', '--expect', '--rcvbuf', '--idle-ms', '--max-seconds']);
  const host = flags.get('--host') ?? '127.0.0.1';
  const port = int(flags, '--port', 0, 65535, 0);
  const expect = int(flags, '--expect', 1, 1e9);
  const rcvbuf = int(flags, '--rcvbuf', 0, 1 << 30, 4 * 1024 * 1024);
  const idleMs = int(flags, '--idle-ms', 10, 600_000, 500);
  const maxSeconds = int(flags, '--max-seconds', 1, 86_400, 60);

  const socket = dgram.createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  let rcvbufError: string | undefined;
  if (rcvbuf > 0) {
    try {
      socket.setRecvBufferSize(rcvbuf);
    } catch (err) {
      rcvbufError = (err as Error).message;
    }
  }
  let errors = 0;
  socket.on('error', () => errors++);

  let datagrams = 0;
  let bytes = 0;
  let first = 0;
  let last = 0;
  let ended: string | null = null;

  const finish = (why: string): void => {
    if (ended !== null) return;
    ended = why;
    clearInterval(ticker);
    clearTimeout(limit);
    socket.removeAllListeners('message');
    const seconds = datagrams > 1 ? (last - first) / 1000 : 0;
    socket.close();
    void line('received', {
      datagrams,
      bytes,
      seconds: Number(seconds.toFixed(6)),
      bytesPerSecond: seconds > 0 ? Math.round(bytes / seconds) : null,
      expected: expect,
      errors,
      ended: why,
    }).then(() => process.exit(0));
  };

  socket.on('message', (msg) => {
    const now = performance.now();
    if (datagrams === 0) first = now;
    last = now;
    datagrams++;
    bytes += msg.length;
    if (datagrams >= expect) finish('count');
  });
  const ticker = setInterval(() => {
    if (datagrams > 0 && performance.now() - last > idleMs) finish('idle');
  }, Math.min(100, idleMs));
  const limit = setTimeout(() => finish('time'), maxSeconds * 1000);
  process.on('SIGTERM', () => finish('signal'));
  process.on('SIGINT', () => finish('signal'));
  stopOnStdinEnd(() => finish('stdin'));

  await line('listening', { host, port: socket.address().port, rcvbuf: socket.getRecvBufferSize(), ...(rcvbufError ? { rcvbufError } : {}) });
}

// ---------------------------------------------------------------------------------------------

async function send(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, ['--host', '--port', '--count', '--size', '--yield-every', '--max-in-flight', '--max-seconds']);
  const host = flags.get('--host') ?? '127.0.0.1';
  const port = int(flags, '--port', 1, 65535);
  const count = int(flags, '--count', 1, 1e9);
  const size = int(flags, '--size', 1, 65507, 1472);
  const yieldEvery = int(flags, '--yield-every', 1, 1e6, 64);
  const maxInFlight = int(flags, '--max-in-flight', 1, 1e7, 4096);
  const maxSeconds = int(flags, '--max-seconds', 1, 86_400, 60);

  const socket = dgram.createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.connect(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  try {
    socket.setSendBufferSize(4 * 1024 * 1024);
  } catch {
    /* the kernel's limit stays */
  }
  let socketErrors = 0;
  socket.on('error', () => socketErrors++);

  const payload = Buffer.alloc(size, 0xa5); // the content does not matter; never written to again
  let attempted = 0;
  let completed = 0;
  let errors = 0;
  // One shared callback: counts completions (a send without a callback would fail silently).
  const onSent = (err: Error | null): void => {
    completed++;
    if (err) errors++;
  };

  let stopped = false;
  stopOnStdinEnd(() => (stopped = true));
  process.on('SIGTERM', () => (stopped = true));
  process.on('SIGINT', () => (stopped = true));

  const t0 = performance.now();
  const deadline = t0 + maxSeconds * 1000;
  await new Promise<void>((resolve) => {
    const burst = (): void => {
      if (stopped || attempted >= count || performance.now() > deadline) {
        resolve();
        return;
      }
      if (attempted - completed <= maxInFlight) {
        const end = Math.min(count, attempted + yieldEvery);
        while (attempted < end) {
          socket.send(payload, onSent);
          attempted++;
        }
      }
      setImmediate(burst);
    };
    burst();
  });
  // Every send completed (or the time is up).
  while (completed < attempted && !stopped && performance.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  const seconds = (performance.now() - t0) / 1000;
  const sent = completed - errors;
  socket.close();
  await line('sent', {
    datagrams: sent,
    bytes: sent * size,
    attempted,
    incomplete: attempted - completed,
    errors: errors + socketErrors,
    seconds: Number(seconds.toFixed(6)),
    bytesPerSecond: seconds > 0 ? Math.round((sent * size) / seconds) : null,
    yieldEvery,
    ended: stopped ? 'signal' : attempted < count ? 'time' : 'count',
  });
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------

const [mode, ...rest] = process.argv.slice(2);
const run = mode === 'recv' ? recv : mode === 'send' ? send : usage(`expected "send" or "recv", got ${mode === undefined ? 'nothing' : `"${mode}"`}`);
run(rest).catch((err: unknown) => {
  process.stderr.write(`blast ${mode}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
