/**
 * The impairing UDP relay (src/impair/relay.ts) as a process, for benchmarks:
 *
 *   node dist/bench/relay-process.js --target 127.0.0.1:PORT --seed N
 *        [--forward SPEC] [--backward SPEC] [--host H] [--port P]
 *
 * SPEC is parseImpairment's compact form, e.g. "loss=0.02,delay=25,rate=100M,queue=600K".
 * Prints {"event":"listening","host":..,"port":..} on stdout once ready; on SIGTERM, SIGINT or
 * the end of stdin (when stdin is a pipe) prints {"event":"stats",...} and exits 0. Bad
 * arguments print a message on stderr and exit 2.
 */
import fs from 'node:fs';
import { parseImpairment, type ImpairmentConfig } from '../src/impair/model.js';
import { startRelay, type RelayOptions } from '../src/impair/relay.js';

function usage(message: string): never {
  process.stderr.write(
    `relay-process: ${message}\n` +
      'usage: relay-process --target HOST:PORT --seed N [--forward SPEC] [--backward SPEC] [--host H] [--port P]\n',
  );
  process.exit(2);
}

function parsePort(text: string, what: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) usage(`${what}: "${text}" is not a port number`);
  return Number(text);
}

/** "127.0.0.1:9000" or "[::1]:9000". */
function parseTarget(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) usage(`--target: "${text}" is not HOST:PORT`);
  const port = parsePort(m[2]!, '--target');
  if (port === 0) usage('--target: port 0');
  return { host: m[1]!, port };
}

function spec(text: string, what: string): ImpairmentConfig {
  try {
    return parseImpairment(text);
  } catch (err) {
    usage(`${what}: ${(err as Error).message}`);
  }
}

function parseArgs(argv: string[]): RelayOptions {
  let target: RelayOptions['target'] | undefined;
  let seed: number | undefined;
  const options: Omit<RelayOptions, 'target' | 'seed'> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined) usage(`${flag} needs a value`);
    i++;
    switch (flag) {
      case '--target':
        target = parseTarget(value);
        break;
      case '--seed':
        if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) usage(`--seed: "${value}" is not an integer in 0..4294967295`);
        seed = Number(value);
        break;
      case '--forward':
        options.forward = spec(value, '--forward');
        break;
      case '--backward':
        options.backward = spec(value, '--backward');
        break;
      case '--host':
        options.host = value;
        break;
      case '--port':
        options.port = parsePort(value, '--port');
        break;
      default:
        usage(`unknown option ${flag}`);
    }
  }
  if (!target) usage('--target is required');
  if (seed === undefined) usage('--seed is required');
  return { ...options, target, seed };
}

async function main(): Promise<void> {
  const relay = await startRelay(parseArgs(process.argv.slice(2)));
  process.stdout.write(`${JSON.stringify({ event: 'listening', host: relay.host, port: relay.port })}\n`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    const stats = relay.stats();
    void relay.close().then(() => {
      process.stdout.write(`${JSON.stringify({ event: 'stats', ...stats })}\n`, () => process.exit(0));
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Only a pipe can "end": /dev/null (stdio 'ignore') would end at once.
  let stdin: fs.Stats | null = null;
  try {
    stdin = fs.fstatSync(0);
  } catch {
    /* no stdin at all */
  }
  if (stdin && (stdin.isFIFO() || stdin.isSocket())) {
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`relay-process: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
