/**
 * `npm run bench [-- --only tcp,udp,relay --size 1G --rounds 9 --relay-size 128M --relay-losses 0,1,2,5 ...]`
 *
 * Six sections, all over 127.0.0.1 only, file to file:
 *   tcp:   sockxfer over TCP (xxh128 and sha256) against netcat (netcat-openbsd), alternating the
 *          order every round, medians at the end.
 *   udp:   a raw Node datagram blast (bench/blast.ts), sockxfer --udp and sockxfer over TCP,
 *          1472-byte datagrams, paired rounds, medians of the per-round ratios.
 *   relay: sockxfer --udp through the impairment relay (bench/relay-process.ts) at 100 Mbit/s
 *          and 50 ms RTT, one run per random-loss rate, PASS/FAIL against the issue's bars.
 *   small: 2,000 files of 4 KiB in one folder tree (bench/small.ts): sockxfer tcp against
 *          tar | nc -N → nc -l | tar x (and that plus sync -f), medians of per-round ratios.
 *   resume: a 256 MiB file (bench/resume.ts), over TCP and UDP: a --rate-slowed send whose sender
 *          is SIGKILLed past 50%, then sent again at full speed; sentBytes against a full send.
 *   encrypt: a 256 MiB file (bench/encrypt.ts) over TCP and UDP, each with and without
 *          --key-file: the rate with the key against the rate without it.
 * Every process the bench starts is stopped when it ends, errors or is interrupted. The bars
 * are reported, not enforced: a FAIL does not change the exit status.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MAX_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE } from '../src/transport/udp/packet.js';
import {
  BIN,
  commandPath,
  formatBytes,
  freePort,
  fsyncFile,
  median,
  parseSize,
  randomFile,
  runCommand,
  shutDown,
  start,
  stopAll,
  stopAllSync,
  waitExit,
  waitListening,
  describeExit,
  type Proc,
} from './lib.js';
import { checkOutput, f1, f2, f3, mbps, prepare, row, rssMB, runXfer, VERIFIED_TEXT, type Context, type Verified } from './common.js';
import { runEncrypt, type EncryptResult } from './encrypt.js';
import { runResume, type ResumeResult } from './resume.js';
import { runSmall, type SmallResult } from './small.js';
import { LOOPBACK_DATAGRAM, loopbackHeader, relayHeader, runLoopback, runRelay, type LoopbackResult, type RelayResult } from './udp.js';

const USAGE = `usage: npm run bench [-- options]   (or: node dist/bench/run.js [options])
  --only <list>     sections to run, comma-separated: tcp, udp, relay, small, resume, encrypt (default: all six)
                      tcp:   sockxfer tcp (xxh128, sha256) against nc
                      udp:   raw Node datagram blast vs sockxfer --udp vs sockxfer tcp, ${LOOPBACK_DATAGRAM}-byte datagrams
                      relay: sockxfer --udp through the impairment relay, 100 Mbit/s, 50 ms RTT, random loss
                      small: many small files in one folder tree: sockxfer tcp vs tar|nc (and tar|nc + sync -f)
                      resume: a --rate-slowed send killed (SIGKILL) past 50%, resumed at full speed, vs a full send; tcp and udp
  --size <n>        size of the file sent in the tcp and udp sections, with K/M/G suffixes (binary)
                    (default: 1G for tcp, 256M for udp)
  --rounds <n>      rounds of the tcp and udp sections (default: 9 for tcp, 5 for udp; single
                    rounds vary a lot on a shared machine)
  --udp-size <n>    the udp section's file size (overrides --size there)
  --udp-rounds <n>  the udp section's rounds (overrides --rounds there)
  --relay-size <n>  the relay section's file size (default 128M: the goodput bars are about the steady rate, and a 64 MiB run spends a tenth of its time in start-up and commit)
  --relay-losses <list>  random-loss rates in percent, applied to both directions (default 0,1,2,5)
  --relay-seed <n>  the relay's seed (default 1)
  --relay-datagram-size <n>  sockxfer --datagram-size in the relay section (default ${LOOPBACK_DATAGRAM}; "ethernet" or ${MIN_DATAGRAM_SIZE}-${MAX_DATAGRAM_SIZE})
  --small-files <n>   the small section's number of files, 100 per folder (default 2000)
  --small-size <n>    the small section's bytes per file, K/M suffixes (default 4096)
  --small-rounds <n>  the small section's rounds (default 5)
  --resume-size <n>   the resume section's file size (default 256M; the interrupted send is
                      slowed with --rate to take about 4 s)
  --resume-rounds <n> the resume section's rounds per transport (default 1)
  --encrypt-size <n>  the encrypt section's file size (default 256M): sent over TCP and UDP
                      (${LOOPBACK_DATAGRAM}-byte datagrams), each with and without --key-file
  --encrypt-rounds <n> the encrypt section's rounds (default 3)
  --dir <folder>    where to put the work folder (a fresh folder is made inside it and removed
                    at the end; default: the system temporary folder)
  --json-out <file> also write the results as JSON to <file>
  -h, --help        this text`;

type Section = 'tcp' | 'udp' | 'relay' | 'small' | 'resume' | 'encrypt';
const SECTIONS: Section[] = ['tcp', 'udp', 'relay', 'small', 'resume', 'encrypt'];

interface Options {
  /** Explicit --size / --rounds (null: each section's default). */
  size: number | null;
  rounds: number | null;
  udpSize: number | null;
  udpRounds: number | null;
  only: Section[];
  relaySize: number;
  relayLosses: number[];
  relaySeed: number;
  relayDatagramSize: number | 'ethernet';
  smallFiles: number;
  smallSize: number;
  smallRounds: number;
  resumeSize: number;
  resumeRounds: number;
  encryptSize: number;
  encryptRounds: number;
  dir: string;
  jsonOut: string | null;
}

const TCP_DEFAULTS = { size: 1024 ** 3, rounds: 9 };
const UDP_DEFAULTS = { size: 256 * 1024 ** 2, rounds: 5 };

function parseArgs(argv: string[]): Options {
  const o: Options = {
    size: null,
    rounds: null,
    udpSize: null,
    udpRounds: null,
    only: [...SECTIONS],
    relaySize: 128 * 1024 ** 2,
    relayLosses: [0, 1, 2, 5],
    relaySeed: 1,
    relayDatagramSize: LOOPBACK_DATAGRAM,
    smallFiles: 2000,
    smallSize: 4096,
    smallRounds: 5,
    resumeSize: 256 * 1024 ** 2,
    resumeRounds: 1,
    encryptSize: 256 * 1024 ** 2,
    encryptRounds: 3,
    dir: os.tmpdir(),
    jsonOut: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (arg.startsWith('--') && eq > 0) return arg.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) usageError(`${name} needs a value`);
      return v;
    };
    const size = (): number => {
      const v = value();
      const n = parseSize(v);
      if (n === null) usageError(`${name}: expected a size such as 256M or 1G, got "${v}"`);
      return n;
    };
    const rounds = (): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 1000) usageError(`${name}: expected a whole number from 1 to 1000, got "${v}"`);
      return n;
    };
    switch (name) {
      case '--size':
        o.size = size();
        break;
      case '--rounds':
        o.rounds = rounds();
        break;
      case '--udp-size':
        o.udpSize = size();
        break;
      case '--udp-rounds':
        o.udpRounds = rounds();
        break;
      case '--relay-size':
        o.relaySize = size();
        break;
      case '--small-files': {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 1_000_000) usageError(`--small-files: expected a whole number from 1 to 1000000, got "${v}"`);
        o.smallFiles = n;
        break;
      }
      case '--small-size':
        o.smallSize = size();
        break;
      case '--small-rounds':
        o.smallRounds = rounds();
        break;
      case '--resume-size':
        o.resumeSize = size();
        break;
      case '--encrypt-size':
        o.encryptSize = size();
        break;
      case '--encrypt-rounds':
        o.encryptRounds = rounds();
        break;
      case '--resume-rounds':
        o.resumeRounds = rounds();
        break;
      case '--only': {
        const v = value().toLowerCase();
        const list = v.split(',').map((x) => x.trim());
        if (list.length === 0 || list.some((x) => !(SECTIONS as string[]).includes(x))) usageError(`--only: expected tcp, udp, relay, small, resume or encrypt (comma-separated), got "${v}"`);
        o.only = SECTIONS.filter((x) => list.includes(x));
        break;
      }
      case '--relay-losses': {
        const v = value();
        const list = v.split(',').map((x) => x.trim().replace(/%$/, ''));
        const nums = list.map((x) => (/^\d+(\.\d+)?$/.test(x) ? Number(x) : NaN));
        if (nums.some((n) => !Number.isFinite(n) || n < 0 || n >= 100)) usageError(`--relay-losses: expected loss rates in percent (0 to under 100), comma-separated, e.g. 0,1,2,5; got "${v}"`);
        o.relayLosses = nums;
        break;
      }
      case '--relay-seed': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) usageError(`--relay-seed: expected an integer from 0 to 4294967295, got "${v}"`);
        o.relaySeed = Number(v);
        break;
      }
      case '--relay-datagram-size': {
        const v = value().toLowerCase();
        const n = Number(v);
        if (v !== 'ethernet' && !(/^\d+$/.test(v) && n >= MIN_DATAGRAM_SIZE && n <= MAX_DATAGRAM_SIZE)) {
          usageError(`--relay-datagram-size: expected "ethernet" or bytes from ${MIN_DATAGRAM_SIZE} to ${MAX_DATAGRAM_SIZE}, got "${v}"`);
        }
        o.relayDatagramSize = v === 'ethernet' ? 'ethernet' : n;
        break;
      }
      case '--dir':
        o.dir = path.resolve(value());
        break;
      case '--json-out':
        o.jsonOut = path.resolve(value());
        break;
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
      default:
        usageError(`unknown option "${arg}"`);
    }
  }
  return o;
}

function usageError(message: string): never {
  process.stderr.write(`bench: ${message}\n${USAGE}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------

type Variant = 'nc' | 'xxh128' | 'sha256';

const LABEL: Record<Variant, string> = { nc: 'nc', xxh128: 'sockxfer tcp xxh128', sha256: 'sockxfer tcp sha256' };

interface Run {
  round: number;
  variant: Variant;
  seconds: number;
  mbPerSecond: number;
  /** nc only: the fsync of the output after nc exited (sockxfer fsyncs before it commits). */
  fsyncSeconds?: number;
  senderPeakRssKiB?: number | null;
  receiverPeakRssKiB?: number | null;
  /** SHA-256 of the output, compared with the source's (first round). */
  verified: Verified;
}

interface TcpContext extends Context {
  nc: string | null;
}

async function runNc(ctx: TcpContext, round: number, verifyHash: boolean): Promise<Run> {
  const nc = ctx.nc!;
  await prepare(ctx);
  const out = path.join(ctx.outDir, 'nc.out');
  const port = await freePort();
  const outFd = fs.openSync(out, 'w');
  let recv: Proc;
  try {
    recv = start('nc receiver', nc, ['-l', '127.0.0.1', String(port)], ['ignore', outFd, 'pipe']);
  } finally {
    fs.closeSync(outFd);
  }
  await waitListening(port, recv, 5000);
  const inFd = fs.openSync(ctx.src, 'r');
  let send: Proc;
  try {
    send = start('nc sender', nc, ['-N', '127.0.0.1', String(port)], [inFd, 'ignore', 'pipe']);
  } finally {
    fs.closeSync(inFd);
  }
  const [xr, xs] = await Promise.all([waitExit(recv, ctx.limitMs), waitExit(send, ctx.limitMs)]);
  const seconds = (xr.at - send.started) / 1000;
  if (xr.code !== 0) throw new Error(`nc receiver: ${describeExit(xr)}; stderr:\n${recv.stderr().trim()}`);
  if (xs.code !== 0) throw new Error(`nc sender: ${describeExit(xs)}; stderr:\n${send.stderr().trim()}`);
  const fsyncSeconds = await fsyncFile(out);
  const verified = await checkOutput(ctx, out, 'nc', verifyHash);
  return { round, variant: 'nc', seconds, mbPerSecond: mbps(ctx.size, seconds), fsyncSeconds, verified };
}

async function runSockxfer(ctx: TcpContext, round: number, hash: 'xxh128' | 'sha256', verifyHash: boolean): Promise<Run> {
  const r = await runXfer(ctx, { label: `sockxfer tcp (${hash})`, hash, transport: 'tcp', verifyHash });
  return {
    round,
    variant: hash,
    seconds: r.wallSeconds,
    mbPerSecond: mbps(ctx.size, r.wallSeconds),
    senderPeakRssKiB: r.senderPeakRssKiB,
    receiverPeakRssKiB: r.receiverPeakRssKiB,
    verified: r.verified,
  };
}

// ---------------------------------------------------------------------------------------------
// Printing

function printRound(runs: Run[], size: number, round: number, rounds: number, order: Variant[]): void {
  const nc = runs.find((r) => r.variant === 'nc');
  const widths = [22, 9, 9, 12, 16, 18];
  console.log(`\nround ${round + 1} of ${rounds} (order: ${order.map((v) => LABEL[v]).join(', ')})`);
  console.log(row(['variant', 'seconds', 'MB/s', 'ratio vs nc', 'sender peak RSS', 'receiver peak RSS'], widths));
  const byVariant: Variant[] = ['nc', 'xxh128', 'sha256'];
  for (const v of byVariant) {
    const r = runs.find((x) => x.variant === v);
    if (!r) continue;
    if (v === 'nc') {
      console.log(row([LABEL.nc, f3(r.seconds), f1(r.mbPerSecond), '1.00', '-', '-'], widths));
      const s = r.seconds + (r.fsyncSeconds ?? 0);
      console.log(row(['nc + fsync of output', f3(s), f1(mbps(size, s)), '-', '-', '-'], widths));
    } else {
      console.log(
        row([LABEL[v], f3(r.seconds), f1(r.mbPerSecond), nc ? f2(r.mbPerSecond / nc.mbPerSecond) : 'n/a', `${f1(rssMB(r.senderPeakRssKiB))} MB`, `${f1(rssMB(r.receiverPeakRssKiB))} MB`], widths),
      );
    }
  }
  const checks = runs.map((r) => `${LABEL[r.variant]}: ${VERIFIED_TEXT[r.verified]}`);
  console.log(`  output check: ${checks.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------

let workDir: string | null = null;
let cleaning: Promise<void> | null = null;
let interrupted = false;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    shutDown(); // nothing new starts while (and after) everything is stopped
    await stopAll();
    if (workDir) await fsp.rm(workDir, { recursive: true, force: true }).catch(() => {});
    workDir = null;
  })();
  return cleaning;
}

function installHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(sig === 'SIGINT' ? 130 : 143); // a second signal: now
      interrupted = true;
      process.stderr.write(`\nbench: ${sig}, stopping every process it started and removing the work folder\n`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  process.on('exit', () => {
    // Last resort if something skipped cleanup(): synchronous only.
    stopAllSync();
    if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  });
}

function readProcFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return 'n/a'; // not Linux
  }
}

async function environment(gnuTime: string | null, nc: string | null) {
  const v = await runCommand(process.execPath, [BIN, '--version'], 30_000);
  const version = v.stdout.trim() || `(sockxfer --version failed: ${v.stderr.trim()})`;
  const warnings = v.stderr.trim();
  const cpus = os.cpus();
  return {
    sockxfer: version,
    sockxferWarnings: warnings || undefined,
    node: process.version,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    tcpCongestionControl: readProcFile('/proc/sys/net/ipv4/tcp_congestion_control'),
    /** Caps on SO_RCVBUF / SO_SNDBUF for unprivileged sockets (UDP). */
    rmemMax: readProcFile('/proc/sys/net/core/rmem_max'),
    wmemMax: readProcFile('/proc/sys/net/core/wmem_max'),
    nc,
    gnuTime,
  };
}

/** A fresh random source file of `size` bytes for one section, in its own folder. */
async function makeSource(work: string, section: Section, size: number): Promise<{ dir: string; src: string; srcSha256: string }> {
  const dir = path.join(work, `src-${section}`);
  await fsp.mkdir(dir);
  const src = path.join(dir, 'bench-source.bin');
  const g0 = performance.now();
  const srcSha256 = await randomFile(src, size);
  console.log(`  source: ${formatBytes(size)} of random bytes in ${((performance.now() - g0) / 1000).toFixed(1)} s, SHA-256 ${srcSha256}`);
  return { dir, src, srcSha256 };
}

async function findNc(): Promise<string | null> {
  let nc = await commandPath('nc');
  if (!nc) {
    console.log('bench: nc (netcat) not found: the netcat reference is skipped, ratios are n/a.');
    console.log('       install it with: sudo apt-get install netcat-openbsd');
  } else {
    const h = await runCommand(nc, ['-h'], 10_000);
    if (!/openbsd/i.test(h.stdout + h.stderr)) {
      console.log(`bench: ${nc} is not OpenBSD netcat (the bench uses its "-l host port" and "-N" syntax): the netcat reference is skipped.`);
      console.log('       install it with: sudo apt-get install netcat-openbsd');
      nc = null;
    }
  }
  return nc;
}

interface TcpResult {
  size: number;
  rounds: number;
  sourceSha256: string;
  runs: Run[];
  summary: ReturnType<typeof tcpSummary>;
}

function tcpSummary(all: Run[], size: number, nc: string | null) {
  const of = (v: Variant) => all.filter((r) => r.variant === v);
  const medianMB = (v: Variant) => median(of(v).map((r) => r.mbPerSecond));
  const ncFsync = median(of('nc').map((r) => mbps(size, r.seconds + (r.fsyncSeconds ?? 0))));
  const ratio = (v: Variant, ref: (r: Run) => number) =>
    nc ? median(of(v).map((r) => { const n = all.find((x) => x.variant === 'nc' && x.round === r.round)!; return r.mbPerSecond / ref(n); })) : null;
  const vsNc = (n: Run) => n.mbPerSecond;
  const vsNcFsync = (n: Run) => mbps(size, n.seconds + (n.fsyncSeconds ?? 0));
  const maxRss = (key: 'senderPeakRssKiB' | 'receiverPeakRssKiB') => {
    const xs = all.map((r) => r[key]).filter((x): x is number => typeof x === 'number');
    return xs.length ? Math.max(...xs) : null;
  };
  return {
    nc: { medianMBps: medianMB('nc'), medianMBpsWithFsync: ncFsync },
    xxh128: { medianMBps: medianMB('xxh128'), medianRatioVsNc: ratio('xxh128', vsNc), medianRatioVsNcWithFsync: ratio('xxh128', vsNcFsync) },
    sha256: { medianMBps: medianMB('sha256'), medianRatioVsNc: ratio('sha256', vsNc), medianRatioVsNcWithFsync: ratio('sha256', vsNcFsync) },
    maxSenderPeakRssMB: rssMB(maxRss('senderPeakRssKiB')),
    maxReceiverPeakRssMB: rssMB(maxRss('receiverPeakRssKiB')),
  };
}

/** The tcp section: sockxfer tcp (xxh128, sha256) against nc. A failure ends the bench. */
async function runTcpSection(work: string, outDir: string, size: number, rounds: number, nc: string | null, gnuTime: string | null): Promise<TcpResult> {
  console.log(`\n== tcp loopback: ${formatBytes(size)} file to file over 127.0.0.1, ${rounds} round(s): ${nc ? 'nc, ' : ''}sockxfer tcp xxh128, sockxfer tcp sha256; MB = 1e6 bytes`);
  const { dir, src, srcSha256 } = await makeSource(work, 'tcp', size);
  const ctx: TcpContext = { size, work, src, srcSha256, outDir, nc, gnuTime, limitMs: 60_000 + Math.ceil((size / 5e6) * 1000) };
  const all: Run[] = [];
  for (let k = 0; k < rounds; k++) {
    const forward: Variant[] = nc ? ['nc', 'xxh128', 'sha256'] : ['xxh128', 'sha256'];
    const order = k % 2 === 0 ? forward : [...forward].reverse();
    const runs: Run[] = [];
    for (const v of order) {
      const verify = k === 0; // SHA-256 of every output in the first round; sizes every round
      runs.push(v === 'nc' ? await runNc(ctx, k, verify) : await runSockxfer(ctx, k, v, verify));
    }
    printRound(runs, size, k, rounds, order);
    all.push(...runs);
  }
  await fsp.rm(dir, { recursive: true, force: true });

  const summary = tcpSummary(all, size, nc);
  console.log(`\nsummary: ${formatBytes(size)}, ${rounds} round(s), medians, MB/s with MB = 1e6 bytes; ratio = median of per-round sockxfer/nc`);
  const w = [22, 10, 13, 21];
  console.log(row(['variant', 'MB/s', 'ratio vs nc', 'ratio vs nc+fsync'], w));
  console.log(row([LABEL.nc, f1(summary.nc.medianMBps), nc ? '1.00' : 'n/a', '-'], w));
  console.log(row(['nc + fsync of output', f1(summary.nc.medianMBpsWithFsync), '-', nc ? '1.00' : 'n/a'], w));
  for (const v of ['xxh128', 'sha256'] as const) {
    console.log(row([LABEL[v], f1(summary[v].medianMBps), f2(summary[v].medianRatioVsNc), f2(summary[v].medianRatioVsNcWithFsync)], w));
  }
  console.log(`  peak RSS (max over all sockxfer runs): sender ${f1(summary.maxSenderPeakRssMB)} MB, receiver ${f1(summary.maxReceiverPeakRssMB)} MB`);
  console.log('  nc: timed from sender start until the receiving nc exits; "nc + fsync" adds an fsync of its output, which sockxfer does before it commits.');
  console.log('  sockxfer: timed from sender spawn until both sender and receiver exited (includes Node start-up, whole-file hash, fsync, atomic rename).');
  return { size, rounds, sourceSha256: srcSha256, runs: all, summary };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  installHandlers();
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: build first with \`npx tsc -p .\` (or npm run build)`);
  }
  const want = (s: Section) => opts.only.includes(s);
  const tcpSize = opts.size ?? TCP_DEFAULTS.size;
  const tcpRounds = opts.rounds ?? TCP_DEFAULTS.rounds;
  const udpSize = opts.udpSize ?? opts.size ?? UDP_DEFAULTS.size;
  const udpRounds = opts.udpRounds ?? opts.rounds ?? UDP_DEFAULTS.rounds;

  const nc = want('tcp') || want('small') ? await findNc() : null;
  let gnuTime: string | null = null;
  try {
    fs.accessSync('/usr/bin/time', fs.constants.X_OK);
    gnuTime = '/usr/bin/time';
  } catch {
    console.log('bench: /usr/bin/time (GNU time) not found: peak RSS is n/a (apt-get install time).');
  }

  const env = await environment(gnuTime, nc);
  const plan = [
    want('tcp') ? `tcp (${formatBytes(tcpSize)} x ${tcpRounds} round(s))` : null,
    want('udp') ? `udp (${formatBytes(udpSize)} x ${udpRounds} round(s))` : null,
    want('relay') ? `relay (${formatBytes(opts.relaySize)} at ${opts.relayLosses.map((p) => `${p}%`).join(', ')} loss)` : null,
    want('small') ? `small (${opts.smallFiles.toLocaleString('en-US')} x ${formatBytes(opts.smallSize)} x ${opts.smallRounds} round(s))` : null,
    want('resume') ? `resume (${formatBytes(opts.resumeSize)} x ${opts.resumeRounds} round(s), tcp and udp)` : null,
    want('encrypt') ? `encrypt (${formatBytes(opts.encryptSize)} x ${opts.encryptRounds} round(s), tcp and udp, key on and off)` : null,
  ].filter((x) => x !== null);
  console.log(`sockxfer benchmark over 127.0.0.1: ${plan.join('; ')}`);
  console.log(`  ${env.sockxfer}`);
  if (env.sockxferWarnings) console.log(`  ${env.sockxferWarnings}`);
  console.log(`  kernel ${env.kernel}; CPU ${env.cpu} x ${env.cpus}; ${env.memoryGiB} GiB RAM; TCP congestion control: ${env.tcpCongestionControl}; rmem_max ${env.rmemMax}, wmem_max ${env.wmemMax}`);
  if (want('tcp') || want('small')) console.log(`  reference: ${nc ? `${nc} (OpenBSD netcat)` : 'none (nc missing)'}; peak RSS via ${gnuTime ?? 'n/a'}`);
  else console.log(`  peak RSS via ${gnuTime ?? 'n/a'}`);

  await fsp.mkdir(opts.dir, { recursive: true });
  workDir = await fsp.mkdtemp(path.join(opts.dir, 'sockxfer-bench-'));
  const work = workDir;
  const outDir = path.join(work, 'out');
  await fsp.mkdir(outDir);
  console.log(`  work folder ${work}`);

  let tcp: TcpResult | null = null;
  let udp: LoopbackResult | null = null;
  let relay: RelayResult | null = null;
  let small: SmallResult | null = null;
  let resume: ResumeResult | null = null;
  let encrypt: EncryptResult | null = null;
  if (want('tcp')) tcp = await runTcpSection(work, outDir, tcpSize, tcpRounds, nc, gnuTime);
  if (want('udp')) {
    loopbackHeader(udpSize, udpRounds);
    const { dir, src, srcSha256 } = await makeSource(work, 'udp', udpSize);
    const ctx: Context = { size: udpSize, work, src, srcSha256, outDir, gnuTime, limitMs: 60_000 + Math.ceil((udpSize / 5e6) * 1000) };
    udp = await runLoopback(ctx, udpRounds);
    await fsp.rm(dir, { recursive: true, force: true });
  }
  if (want('relay')) {
    relayHeader(opts.relaySize, opts.relayLosses, opts.relaySeed, opts.relayDatagramSize);
    const { dir, src, srcSha256 } = await makeSource(work, 'relay', opts.relaySize);
    // At 100 Mbit/s a MiB takes 0.08 s; allow 1 MB/s (heavy loss) plus a minute.
    const ctx: Context = { size: opts.relaySize, work, src, srcSha256, outDir, gnuTime, limitMs: 60_000 + Math.ceil((opts.relaySize / 1e6) * 1000) };
    relay = await runRelay(ctx, opts.relayLosses, opts.relaySeed, opts.relayDatagramSize);
    await fsp.rm(dir, { recursive: true, force: true });
  }
  if (want('small')) small = await runSmall(work, opts.smallFiles, opts.smallSize, opts.smallRounds, nc, gnuTime);
  if (want('resume')) resume = await runResume(work, opts.resumeSize, opts.resumeRounds);
  if (want('encrypt')) {
    const { dir, src, srcSha256 } = await makeSource(work, 'encrypt', opts.encryptSize);
    const ctx: Context = { size: opts.encryptSize, work, src, srcSha256, outDir, gnuTime, limitMs: 60_000 + Math.ceil((opts.encryptSize / 5e6) * 1000) };
    encrypt = await runEncrypt(ctx, opts.encryptRounds);
    await fsp.rm(dir, { recursive: true, force: true });
  }

  if (udp || relay || small) {
    console.log('\nbars (reported, not enforced):');
    if (udp) console.log(`  ${udp.summary.bar.pass ? 'PASS' : 'FAIL'}  ${udp.summary.bar.name}: ${f2(udp.summary.bar.value)}`);
    for (const b of relay?.bars ?? []) console.log(`  ${b.pass ? 'PASS' : 'FAIL'}  relay ${b.name}: ${b.kind === 'max' ? (b.value === null ? 'n/a' : `${(b.value * 100).toFixed(2)}%`) : f1(b.value)}`);
    if (small) console.log(`  ${small.summary.bar.pass ? 'PASS' : 'FAIL'}  ${small.summary.bar.name}: ${f2(small.summary.bar.value)}${small.summary.failedRuns ? ` (${small.summary.failedRuns} failed run(s))` : ''}`);
  }

  if (opts.jsonOut) {
    const doc = {
      command: ['node', path.relative(process.cwd(), process.argv[1] ?? 'dist/bench/run.js'), ...process.argv.slice(2)].join(' '),
      date: new Date().toISOString(),
      options: {
        only: opts.only.join(','),
        size: tcp ? tcpSize : null,
        rounds: tcp ? tcpRounds : null,
        udpSize: udp ? udpSize : null,
        udpRounds: udp ? udpRounds : null,
        relaySize: relay ? opts.relaySize : null,
        relayLossesPercent: relay ? opts.relayLosses : null,
        relaySeed: relay ? opts.relaySeed : null,
        relayDatagramSize: relay ? opts.relayDatagramSize : null,
        smallFiles: small ? opts.smallFiles : null,
        smallSize: small ? opts.smallSize : null,
        smallRounds: small ? opts.smallRounds : null,
        resumeSize: resume ? opts.resumeSize : null,
        resumeRounds: resume ? opts.resumeRounds : null,
        encryptSize: encrypt ? opts.encryptSize : null,
        encryptRounds: encrypt ? opts.encryptRounds : null,
      },
      environment: env,
      // The tcp section, under the names the earlier versions used:
      sourceSha256: tcp?.sourceSha256 ?? null,
      runs: tcp?.runs ?? [],
      summary: tcp?.summary ?? null,
      udpLoopback: udp,
      relay,
      small,
      resume,
      encrypt,
    };
    await fsp.writeFile(opts.jsonOut, `${JSON.stringify(doc, null, 2)}\n`);
    console.log(`  summary written to ${opts.jsonOut}`);
  }
}

main()
  .then(
    () => 0,
    (err: unknown) => {
      if (interrupted) return 130; // the signal handler reports, cleans up and exits
      process.stderr.write(`bench: FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    },
  )
  .then(async (status) => {
    await cleanup();
    process.exit(status);
  });
