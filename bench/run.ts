/**
 * `npm run bench [-- --size 1G --rounds 5 --only tcp --dir D --json-out FILE]`
 *
 * File-to-file throughput over loopback (127.0.0.1 only): sockxfer over TCP (xxh128 and sha256)
 * against netcat (netcat-openbsd) in the same run, alternating the order every round, medians
 * at the end. Every process the bench starts is stopped when it ends, errors or is interrupted.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  BIN,
  commandPath,
  formatBytes,
  freePort,
  fsyncFile,
  median,
  parseSize,
  randomFile,
  readPeakRssKiB,
  runCommand,
  sha256File,
  start,
  stopAll,
  stopAllSync,
  waitExit,
  waitListening,
  describeExit,
  type Proc,
} from './lib.js';

const USAGE = `usage: npm run bench [-- options]   (or: node dist/bench/run.js [options])
  --size <n>        size of the file sent, with K/M/G suffixes (binary) (default 1G)
  --rounds <n>      rounds; each runs nc, sockxfer xxh128 and sockxfer sha256 once (default 9: single rounds vary a lot on a shared machine)
  --only <t>        sockxfer transport to measure; only "tcp" exists so far (default tcp)
  --dir <folder>    where to put the work folder (a fresh folder is made inside it and removed
                    at the end; default: the system temporary folder)
  --json-out <file> also write the summary as JSON to <file>
  -h, --help        this text`;

interface Options {
  size: number;
  rounds: number;
  only: 'tcp';
  dir: string;
  jsonOut: string | null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { size: 1024 ** 3, rounds: 9, only: 'tcp', dir: os.tmpdir(), jsonOut: null };
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
    switch (name) {
      case '--size': {
        const v = value();
        const n = parseSize(v);
        if (n === null) usageError(`--size: expected a size such as 256M or 1G, got "${v}"`);
        o.size = n;
        break;
      }
      case '--rounds': {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 1000) usageError(`--rounds: expected a whole number from 1 to 1000, got "${v}"`);
        o.rounds = n;
        break;
      }
      case '--only': {
        const v = value().toLowerCase();
        if (v !== 'tcp') usageError(`--only: only "tcp" is available in this version, got "${v}"`);
        o.only = 'tcp';
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

/** How an output was checked: its SHA-256 read back, or its size (+ the SHA-256 sockxfer reported). */
type Verified = 'sha256' | 'size' | 'size+reported-sha256';

interface Context {
  size: number;
  work: string;
  src: string;
  srcSha256: string;
  outDir: string;
  nc: string | null;
  gnuTime: string | null;
  /** Longest a single timed run may take before it is killed. */
  limitMs: number;
}

function mbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e6;
}

/** Before every timed run: no previous output, dirty pages written back. */
async function prepare(ctx: Context): Promise<void> {
  for (const name of await fsp.readdir(ctx.outDir)) await fsp.rm(path.join(ctx.outDir, name), { force: true, recursive: true });
  const r = await runCommand('sync', [], 120_000);
  if (r.code !== 0) throw new Error(`sync failed: ${r.stderr.trim()}`);
}

async function checkOutput(ctx: Context, file: string, what: string, hash: boolean): Promise<'sha256' | 'size'> {
  const st = await fsp.stat(file).catch(() => null);
  if (!st) throw new Error(`${what}: no output file ${file}`);
  if (st.size !== ctx.size) throw new Error(`${what}: output has ${st.size} bytes, the source ${ctx.size}`);
  if (!hash) return 'size';
  const sha = await sha256File(file);
  if (sha !== ctx.srcSha256) throw new Error(`${what}: output SHA-256 ${sha} differs from the source's ${ctx.srcSha256}`);
  return 'sha256';
}

async function runNc(ctx: Context, round: number, verifyHash: boolean): Promise<Run> {
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

/** sockxfer, wrapped in GNU time (peak RSS) when there is one. */
function startSockxfer(ctx: Context, name: string, args: string[], rssFile: string): Proc {
  const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
  if (ctx.gnuTime) return start(name, ctx.gnuTime, ['-f', '%M', '-o', rssFile, process.execPath, BIN, ...args], stdio);
  return start(name, process.execPath, [BIN, ...args], stdio);
}

async function runSockxfer(ctx: Context, round: number, hash: 'xxh128' | 'sha256', verifyHash: boolean): Promise<Run> {
  await prepare(ctx);
  const recvRss = path.join(ctx.work, 'rss-receiver');
  const sendRss = path.join(ctx.work, 'rss-sender');
  await fsp.rm(recvRss, { force: true });
  await fsp.rm(sendRss, { force: true });
  const recv = startSockxfer(ctx, `sockxfer receive (${hash})`, ['receive', '--port', '0', '--host', '127.0.0.1', '--dir', ctx.outDir, '--once', '--json'], recvRss);
  const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
  const port = listening.port as number;
  const send = startSockxfer(ctx, `sockxfer send (${hash})`, ['send', ctx.src, `127.0.0.1:${port}`, '--json', '--hash', hash], sendRss);
  const [xs, xr] = await Promise.all([waitExit(send, ctx.limitMs), waitExit(recv, ctx.limitMs)]);
  const seconds = (Math.max(xs.at, xr.at) - send.started) / 1000;
  if (xs.code !== 0) throw new Error(`sockxfer send --hash ${hash}: ${describeExit(xs)}; stderr:\n${send.stderr().trim()}`);
  if (xr.code !== 0) throw new Error(`sockxfer receive (${hash}): ${describeExit(xr)}; stderr:\n${recv.stderr().trim()}`);
  // Let the stdout readers take in the last lines ('exit' can come before them).
  await Promise.all([send, recv].map((p) => new Promise((resolve) => (p.child.stdout && !p.child.stdout.closed ? p.child.stdout.once('close', resolve) : resolve(null)))));
  const sent = [...send.events].reverse().find((e) => e.event === 'done');
  const got = [...recv.events].reverse().find((e) => e.event === 'done');
  if (!sent || !got) throw new Error(`sockxfer (${hash}): exit 0 but no done event from the ${sent ? 'receiver' : 'sender'}`);
  if (sent.hash !== got.hash || sent.bytes !== ctx.size || got.bytes !== ctx.size) {
    throw new Error(`sockxfer (${hash}): sender and receiver disagree: ${JSON.stringify(sent)} vs ${JSON.stringify(got)}`);
  }
  if (hash === 'sha256' && sent.hash !== ctx.srcSha256) throw new Error(`sockxfer (sha256): reported ${String(sent.hash)}, the source is ${ctx.srcSha256}`);
  const checked = await checkOutput(ctx, path.join(ctx.outDir, path.basename(ctx.src)), `sockxfer (${hash})`, verifyHash);
  const verified: Verified = checked === 'size' && hash === 'sha256' ? 'size+reported-sha256' : checked;
  return {
    round,
    variant: hash,
    seconds,
    mbPerSecond: mbps(ctx.size, seconds),
    senderPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(sendRss) : null,
    receiverPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(recvRss) : null,
    verified,
  };
}

// ---------------------------------------------------------------------------------------------
// Printing

const f1 = (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(1));
const f2 = (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(2));
const f3 = (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(3));
const rssMB = (kib: number | null | undefined): number | null => (kib === null || kib === undefined ? null : (kib * 1024) / 1e6);

function row(cells: string[], widths: number[]): string {
  return '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
}

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
  const how: Record<Verified, string> = {
    sha256: 'SHA-256 identical',
    size: 'size identical',
    'size+reported-sha256': 'size identical, reported SHA-256 = source',
  };
  const checks = runs.map((r) => `${LABEL[r.variant]}: ${how[r.verified]}`);
  console.log(`  output check: ${checks.join('; ')}`);
}

// ---------------------------------------------------------------------------------------------

let workDir: string | null = null;
let cleaning: Promise<void> | null = null;
let interrupted = false;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
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

async function environment(gnuTime: string | null, nc: string | null) {
  let congestion = 'n/a';
  try {
    congestion = fs.readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8').trim();
  } catch {
    /* not Linux */
  }
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
    tcpCongestionControl: congestion,
    nc,
    gnuTime,
  };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  installHandlers();
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: build first with \`npx tsc -p .\` (or npm run build)`);
  }

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
  let gnuTime: string | null = null;
  try {
    fs.accessSync('/usr/bin/time', fs.constants.X_OK);
    gnuTime = '/usr/bin/time';
  } catch {
    console.log('bench: /usr/bin/time (GNU time) not found: peak RSS is n/a (apt-get install time).');
  }

  const env = await environment(gnuTime, nc);
  console.log(`sockxfer loopback benchmark: ${formatBytes(opts.size)} file to file over 127.0.0.1, ${opts.rounds} round(s), MB = 1e6 bytes`);
  console.log(`  ${env.sockxfer}`);
  if (env.sockxferWarnings) console.log(`  ${env.sockxferWarnings}`);
  console.log(`  kernel ${env.kernel}; CPU ${env.cpu} x ${env.cpus}; ${env.memoryGiB} GiB RAM; TCP congestion control: ${env.tcpCongestionControl}`);
  console.log(`  reference: ${nc ? `${nc} (OpenBSD netcat)` : 'none (nc missing)'}; peak RSS via ${gnuTime ?? 'n/a'}`);

  await fsp.mkdir(opts.dir, { recursive: true });
  workDir = await fsp.mkdtemp(path.join(opts.dir, 'sockxfer-bench-'));
  const srcDir = path.join(workDir, 'src');
  const outDir = path.join(workDir, 'out');
  await fsp.mkdir(srcDir);
  await fsp.mkdir(outDir);
  const src = path.join(srcDir, 'bench-source.bin');
  console.log(`  work folder ${workDir}`);
  const g0 = performance.now();
  const srcSha256 = await randomFile(src, opts.size);
  console.log(`  source: ${formatBytes(opts.size)} of random bytes in ${((performance.now() - g0) / 1000).toFixed(1)} s, SHA-256 ${srcSha256}`);

  const ctx: Context = { size: opts.size, work: workDir, src, srcSha256, outDir, nc, gnuTime, limitMs: 60_000 + Math.ceil((opts.size / 5e6) * 1000) };
  const all: Run[] = [];
  for (let k = 0; k < opts.rounds; k++) {
    const forward: Variant[] = nc ? ['nc', 'xxh128', 'sha256'] : ['xxh128', 'sha256'];
    const order = k % 2 === 0 ? forward : [...forward].reverse();
    const runs: Run[] = [];
    for (const v of order) {
      const verify = k === 0; // SHA-256 of every output in the first round; sizes every round
      runs.push(v === 'nc' ? await runNc(ctx, k, verify) : await runSockxfer(ctx, k, v, verify));
    }
    printRound(runs, opts.size, k, opts.rounds, order);
    all.push(...runs);
  }

  // Summary
  const of = (v: Variant) => all.filter((r) => r.variant === v);
  const medianMB = (v: Variant) => median(of(v).map((r) => r.mbPerSecond));
  const ncFsync = median(of('nc').map((r) => mbps(opts.size, r.seconds + (r.fsyncSeconds ?? 0))));
  const ratio = (v: Variant, ref: (r: Run) => number) =>
    nc ? median(of(v).map((r) => { const n = all.find((x) => x.variant === 'nc' && x.round === r.round)!; return r.mbPerSecond / ref(n); })) : null;
  const vsNc = (n: Run) => n.mbPerSecond;
  const vsNcFsync = (n: Run) => mbps(opts.size, n.seconds + (n.fsyncSeconds ?? 0));
  const maxRss = (key: 'senderPeakRssKiB' | 'receiverPeakRssKiB') => {
    const xs = all.map((r) => r[key]).filter((x): x is number => typeof x === 'number');
    return xs.length ? Math.max(...xs) : null;
  };
  const summary = {
    nc: { medianMBps: medianMB('nc'), medianMBpsWithFsync: ncFsync },
    xxh128: { medianMBps: medianMB('xxh128'), medianRatioVsNc: ratio('xxh128', vsNc), medianRatioVsNcWithFsync: ratio('xxh128', vsNcFsync) },
    sha256: { medianMBps: medianMB('sha256'), medianRatioVsNc: ratio('sha256', vsNc), medianRatioVsNcWithFsync: ratio('sha256', vsNcFsync) },
    maxSenderPeakRssMB: rssMB(maxRss('senderPeakRssKiB')),
    maxReceiverPeakRssMB: rssMB(maxRss('receiverPeakRssKiB')),
  };

  console.log(`\nsummary: ${formatBytes(opts.size)}, ${opts.rounds} round(s), medians, MB/s with MB = 1e6 bytes; ratio = median of per-round sockxfer/nc`);
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

  if (opts.jsonOut) {
    const doc = {
      command: ['node', path.relative(process.cwd(), process.argv[1] ?? 'dist/bench/run.js'), ...process.argv.slice(2)].join(' '),
      date: new Date().toISOString(),
      options: { size: opts.size, rounds: opts.rounds, only: opts.only },
      environment: env,
      sourceSha256: srcSha256,
      runs: all,
      summary,
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
