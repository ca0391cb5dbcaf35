/**
 * The command line: commander wiring, signals, and the one place sockxfer exits.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ERROR_CODES, SockxferError, toSockxferError, type ErrorCode } from '../errors.js';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, PROTOCOL_VERSION, crc32cImplementation, type HashAlgorithm } from '../protocol/index.js';
import { DEFAULT_MAX_FILES, DEFAULT_MAX_SESSIONS, DEFAULT_SEND_OPTIONS, VERSION, xxh128Implementation } from '../transfer/index.js';
import { MAX_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE, parsePort, udpBatching, type CongestionName } from '../transport/index.js';
import { formatBytes, parseBitRate, parseSize } from './format.js';
import { writeNewKey } from './keys.js';
import { Output } from './output.js';
import { runReceive, type ReceiveFlags } from './receive.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../transfer/receiver.js';
import { runSend, type SendFlags } from './send.js';

const EXAMPLES = `
Examples:
  $ sockxfer receive --port 9000 --dir ./backups       listen on all interfaces, write into ./backups
  $ sockxfer send ./db.dump backup-host:9000          send over TCP; exit 0 only once the receiver committed it
  $ sockxfer send ./photos ./notes.txt backup-host:9000   folders travel whole (relative paths, modes, mtimes)
  $ pg_dump db | sockxfer send - backup-host:9000 --name db.sql   standard input, of any length
  $ sockxfer send ./db.dump backup-host:9000 --udp    over UDP, with sockxfer's own acks, retransmission and pacing
  $ sockxfer send ./db.dump [::1]:9000 --hash sha256   SHA-256 instead of the faster xxh128
  $ sockxfer receive --port 0 --once --json            any free port, one transfer, NDJSON events
  $ sockxfer receive --port 9000 --once --stdout | tar x   one incoming file to standard output

Exit status:
${exitTable()}`;

function exitTable(): string {
  const byExit = new Map<number, ErrorCode[]>();
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const list = byExit.get(ERROR_CODES[code].exit) ?? [];
    list.push(code);
    byExit.set(ERROR_CODES[code].exit, list);
  }
  const rows = [`  0    done`];
  for (const [exit, codes] of [...byExit].sort((a, b) => a[0] - b[0])) rows.push(`  ${String(exit).padEnd(4)} ${codes.join(', ')}`);
  return rows.join('\n');
}

function versionLine(): string {
  const crc = crc32cImplementation === 'js' ? 'crc32c js-fallback (SLOW: sse4_crc32 is not built; run `npm rebuild sse4_crc32`)' : `crc32c ${crc32cImplementation}`;
  const udp = udpBatching.available ? 'udp io batched' : `udp io dgram (${udpBatching.reason})`;
  return `sockxfer ${VERSION} (protocol ${PROTOCOL_VERSION}, ${crc}, xxh128 ${xxh128Implementation}, ${udp}, node ${process.version})`;
}

function positiveSeconds(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new InvalidArgumentError('expected seconds, more than 0 and at most 86400');
  return n;
}

function chunkSize(text: string): number {
  const n = parseSize(text);
  if (n === null || n < MIN_CHUNK_SIZE || n > MAX_CHUNK_SIZE) {
    throw new InvalidArgumentError(`expected a size from ${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)} (e.g. 1M, 256K)`);
  }
  return n;
}

function datagramSize(text: string): number | 'ethernet' {
  if (text === 'ethernet') return 'ethernet';
  const n = parseSize(text);
  if (n === null || n < MIN_DATAGRAM_SIZE || n > MAX_DATAGRAM_SIZE) {
    throw new InvalidArgumentError(`expected bytes from ${MIN_DATAGRAM_SIZE} to ${MAX_DATAGRAM_SIZE}, or "ethernet" (1472 on IPv4, 1452 on IPv6)`);
  }
  return n;
}

function sizeLimit(text: string): number {
  const n = parseSize(text);
  if (n === null || n < 0) throw new InvalidArgumentError('expected a size (e.g. 10G, 500M, 4096)');
  return n;
}

function positiveHours(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n > 24 * 365) throw new InvalidArgumentError('expected hours, more than 0 and at most 8760 (fractions allowed: 0.5 is 30 minutes)');
  return n;
}

function retries(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0 || n > 1000) throw new InvalidArgumentError('expected a whole number from 0 to 1000');
  return n;
}

function count(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number, at least 1');
  return n;
}

function bitRate(text: string): number {
  const n = parseBitRate(text);
  if (n === null || n < 8000) throw new InvalidArgumentError('expected bits per second, at least 8k (e.g. 100M, 1.5G, 800k)');
  return n;
}

function port(text: string): number {
  try {
    return parsePort(text, true);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

interface Streams {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Parses argv and runs the command; resolves with the exit status. Never exits the process. */
export async function main(argv: string[], signal: AbortSignal, streams: Streams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let status = 0;
  let output: Output | null = null;
  const program = new Command('sockxfer')
    .description('Move files between machines over TCP or UDP, verified end to end: per-chunk CRC32C, a whole-file hash, atomic commit.')
    .version(versionLine(), '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => streams.stdout.write(s), writeErr: (s) => streams.stderr.write(s) })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXAMPLES);
  // exitOverride, configureOutput and showHelpAfterError are inherited by the commands added below.

  program
    .command('send')
    .usage('[options] <path...> <host:port>')
    .description('send files, folders or standard input to a receiver')
    .argument('<path...>', 'files and folders to send ("-" for standard input, with --name), then host:port or [ipv6]:port where a receiver listens')
    .option('--name <name>', 'the name standard input ("-") arrives under')
    .option('--follow-symlinks', 'follow symbolic links inside folders (default: skip them, with a warning)', false)
    .option('--retry <n>', 'retry up to n times when the attempt fails with exit 3 or 4 (network, timeout, busy receiver), resuming each time', retries, 0)
    .option('--retry-delay <seconds>', 'wait before the first retry; doubles each time, with jitter', positiveSeconds, 1)
    .option('--receipt <file>', 'write a JSON manifest of every file (name, size, hash, result) after the receiver answered')
    .option('--key-file <file>', 'the pre-shared key (else $SOCKXFER_KEY): prove it to the receiver and encrypt everything')
    .addOption(new Option('--hash <algorithm>', 'whole-file hash').choices(['xxh128', 'sha256']).default(DEFAULT_SEND_OPTIONS.hash))
    .addOption(
      new Option('--chunk-size <size>', `bytes per chunk (${formatBytes(MIN_CHUNK_SIZE)}-${formatBytes(MAX_CHUNK_SIZE)})`)
        .argParser(chunkSize)
        .default(DEFAULT_SEND_OPTIONS.chunkSize, formatBytes(DEFAULT_SEND_OPTIONS.chunkSize)),
    )
    .option('--timeout <seconds>', 'connect timeout, and the longest the transfer may go without progress', positiveSeconds, DEFAULT_SEND_OPTIONS.timeoutMs / 1000)
    .option('--udp', "send over UDP with sockxfer's own reliability layer, instead of TCP")
    .addOption(
      new Option('--datagram-size <bytes>', `UDP payload bytes per datagram (${MIN_DATAGRAM_SIZE}-${MAX_DATAGRAM_SIZE}, or "ethernet")`)
        .argParser(datagramSize)
        .default(DEFAULT_SEND_OPTIONS.udp.datagramSize),
    )
    .addOption(new Option('--cc <algorithm>', 'UDP congestion control: rate (delivery-rate based, like BBR) or reno (RFC 9002 NewReno)').choices(['rate', 'reno']).default('rate'))
    .option('--rate <bits/s>', 'never send faster than this, over TCP or UDP (e.g. 100M, 1.5G)', bitRate)
    .option('--json', 'NDJSON events on stdout', false)
    .option('--quiet', 'print errors only', false)
    .addHelpText(
      'after',
      '\nExamples:\n  $ sockxfer send ./db.dump backup-host:9000\n  $ sockxfer send ./photos ./docs backup-host:9000\n  $ tar c ./etc | sockxfer send - backup-host:9000 --name etc.tar\n  $ sockxfer send ./db.dump backup-host:9000 --udp --datagram-size ethernet\n  $ sockxfer send ./db.dump 192.0.2.10:9000 --udp --rate 50M --json\n  $ sockxfer send ./big.iso [2001:db8::10]:9000 --timeout 60 --hash sha256',
    )
    .action(async (args: string[], opts: { name?: string; followSymlinks: boolean; retry: number; retryDelay: number; receipt?: string; keyFile?: string; hash: HashAlgorithm; chunkSize: number; timeout: number; udp?: boolean; datagramSize: number | 'ethernet'; cc: CongestionName; rate?: number; json: boolean; quiet: boolean }, command: Command) => {
      if (args.length < 2) command.error('error: missing host:port after the paths to send', { exitCode: ERROR_CODES.E_USAGE.exit, code: 'sockxfer.missingTarget' });
      const target = args[args.length - 1]!;
      const paths = args.slice(0, -1);
      if (opts.name !== undefined && !paths.includes('-')) command.error('error: --name names standard input ("-"), which is not among the paths', { exitCode: ERROR_CODES.E_USAGE.exit, code: 'sockxfer.nameWithoutStdin' });
      // UDP's options do nothing over TCP: say so rather than ignore them.
      const udpOnly = ['datagramSize', 'cc'].filter((o) => command.getOptionValueSource(o) === 'cli');
      if (!opts.udp && udpOnly.length > 0) {
        const names = udpOnly.map((o) => `--${o.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ');
        command.error(`error: ${names} only ${udpOnly.length > 1 ? 'apply' : 'applies'} with --udp`, { exitCode: ERROR_CODES.E_USAGE.exit, code: 'sockxfer.udpOnly' });
      }
      output = new Output({ json: opts.json, quiet: opts.quiet, stdout: streams.stdout, stderr: streams.stderr });
      const flags: SendFlags = {
        streamName: opts.name,
        followSymlinks: opts.followSymlinks,
        hash: opts.hash,
        chunkSize: opts.chunkSize,
        timeout: opts.timeout,
        transport: opts.udp ? 'udp' : 'tcp',
        udp: { datagramSize: opts.datagramSize, cc: opts.cc, rateLimit: opts.rate === undefined ? 0 : opts.rate / 8 },
        rateLimit: opts.rate === undefined ? 0 : opts.rate / 8,
        retry: opts.retry,
        retryDelay: opts.retryDelay,
        receipt: opts.receipt,
        keyFile: opts.keyFile,
      };
      status = await runSend(paths, target, flags, output, signal);
    });

  program
    .command('receive')
    .description('listen and write the files that arrive')
    .requiredOption('--port <port>', 'port to listen on (0: any free port; the port is announced)', port)
    .option('--host <address>', 'address to listen on (default: all interfaces, IPv6 and IPv4)')
    .addOption(new Option('--transport <which>', 'listen on TCP, UDP or both (same port number)').choices(['tcp', 'udp', 'both']).default('both'))
    .option('--dir <folder>', 'folder to write files into (created if missing)', '.')
    .option('--overwrite', 'replace existing files that differ (default: refuse them; an identical file is always "up to date")', false)
    .option('--keep-both', 'keep an existing file that differs and commit the new one as "name (1).ext"', false)
    .option('--max-size <size>', 'largest file or stream accepted (e.g. 10G)', sizeLimit)
    .option('--max-files <n>', 'most files and folders in one transfer', count, DEFAULT_MAX_FILES)
    .option('--max-sessions <n>', 'transfers served at once; more are told E_BUSY (exit 4: try later)', count, DEFAULT_MAX_SESSIONS)
    .option('--log <file>', 'append one JSON line per finished transfer (who, what, bytes, hashes, result)')
    .option('--key-file <file>', 'the pre-shared key (else $SOCKXFER_KEY): serve only senders that prove it, encrypt everything')
    .option('--partial-ttl <hours>', 'remove partial data of interrupted transfers untouched this long (kept to resume them)', positiveHours, 24)
    .option('--once', 'exit after the first transfer, with its exit status', false)
    .option('--stdout', 'with --once: write the one incoming file to standard output instead of the folder (events and --json go to stderr)', false)
    .option('--timeout <seconds>', 'the longest a connection may go without progress (see also --handshake-timeout)', positiveSeconds, 30)
    .option('--handshake-timeout <seconds>', 'longest from a connection to its HELLO, however slowly it trickles in (then E_TIMEOUT)', positiveSeconds, DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000)
    .option('--json', 'NDJSON events on stdout', false)
    .option('--quiet', 'print errors and the listening address only', false)
    .addHelpText('after', '\nExamples:\n  $ sockxfer receive --port 9000 --dir ./backups\n  $ sockxfer receive --port 0 --host 127.0.0.1 --once --json\n  $ sockxfer receive --port 9000 --dir /srv/incoming --overwrite')
    .action(async (opts: Omit<ReceiveFlags, 'transports' | 'policy' | 'partialTtlHours' | 'sink'> & { stdout: boolean; partialTtl: number; overwrite: boolean; keepBoth: boolean; transport: 'tcp' | 'udp' | 'both'; json: boolean; quiet: boolean }, command: Command) => {
      if (opts.overwrite && opts.keepBoth) command.error('error: --overwrite and --keep-both exclude each other', { exitCode: ERROR_CODES.E_USAGE.exit, code: 'sockxfer.policy' });
      if (opts.stdout && !opts.once) command.error('error: --stdout needs --once (standard output takes one file)', { exitCode: ERROR_CODES.E_USAGE.exit, code: 'sockxfer.stdout' });
      // With --stdout the data owns standard output: every event goes to stderr.
      output = new Output({ json: opts.json, quiet: opts.quiet, stdout: opts.stdout ? streams.stderr : streams.stdout, stderr: streams.stderr });
      const transports = opts.transport === 'both' ? (['tcp', 'udp'] as const) : ([opts.transport] as const);
      status = await runReceive(
        {
          port: opts.port,
          host: opts.host,
          dir: opts.dir,
          policy: opts.overwrite ? 'overwrite' : opts.keepBoth ? 'keep-both' : 'refuse',
          once: opts.once,
          timeout: opts.timeout,
          handshakeTimeout: opts.handshakeTimeout,
          transports: [...transports],
          maxSize: opts.maxSize,
          maxFiles: opts.maxFiles,
          maxSessions: opts.maxSessions,
          log: opts.log,
          partialTtlHours: opts.partialTtl,
          sink: opts.stdout ? streams.stdout : undefined,
          keyFile: opts.keyFile,
        },
        output,
        signal,
      );
    });

  program
    .command('keygen')
    .description('write a new random key (32 bytes, base64) to a file only you can read, for --key-file on both sides')
    .argument('<file>', 'where to write it (never overwritten)')
    .option('--json', 'NDJSON events on stdout', false)
    .option('--quiet', 'print errors only', false)
    .action(async (file: string, opts: { json: boolean; quiet: boolean }) => {
      output = new Output({ json: opts.json, quiet: opts.quiet, stdout: streams.stdout, stderr: streams.stderr });
      await writeNewKey(file);
      output.info(`wrote a new key to ${file}; copy it to the other side and use --key-file ${file} on both`);
      output.event('key', { file });
    });


  if (crc32cImplementation === 'js') {
    streams.stderr.write('sockxfer: warning: CRC32C runs on the slow JavaScript fallback (the native sse4_crc32 module is not built); run `npm rebuild sse4_crc32`\n');
  }

  try {
    await program.parseAsync(argv);
    if (argv.length <= 2) {
      program.outputHelp({ error: true });
      return ERROR_CODES.E_USAGE.exit;
    }
    return status;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander already printed the message.
      if (err.exitCode === 0) return 0;
      if (argv.includes('--json')) {
        new Output({ json: true, quiet: true, stdout: streams.stdout, stderr: streams.stderr }).event('error', {
          code: 'E_USAGE',
          exitCode: ERROR_CODES.E_USAGE.exit,
          message: err.message.replace(/^error: /, ''),
        });
      }
      return ERROR_CODES.E_USAGE.exit;
    }
    const e = toSockxferError(err);
    const out: Output = output ?? new Output({ json: false, quiet: false, stdout: streams.stdout, stderr: streams.stderr });
    out.error(e);
    return e.exitCode;
  } finally {
    (output as Output | null)?.close();
  }
}

/**
 * The one exit point: runs main with SIGINT/SIGTERM wired to an abort, flushes stdout, exits.
 * A second signal exits at once.
 */
export async function run(argv: string[]): Promise<never> {
  const controller = new AbortController();
  const onSignal = (name: string) => {
    if (controller.signal.aborted) process.exit(ERROR_CODES.E_INTERRUPTED.exit);
    controller.abort(new SockxferError('E_INTERRUPTED', `interrupted by ${name}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  let status: number;
  try {
    status = await main(argv, controller.signal);
  } catch (err) {
    process.stderr.write(`sockxfer: internal error: ${toSockxferError(err).stack ?? String(err)}\n`);
    status = ERROR_CODES.E_INTERNAL.exit;
  }
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(status);
}
