/**
 * The `small` section of `npm run bench`: many small files in one folder tree (default 2,000 ×
 * 4 KiB in 20 folders of 100), over 127.0.0.1, file tree to file tree.
 *
 * - reference: `tar c <tree> | nc -N 127.0.0.1 PORT` into `nc -l 127.0.0.1 PORT | tar x -C <fresh>`
 *   (the receiving pipeline listens before the clock starts); timed from the sending
 *   pipeline's start until both pipelines exited. "tar|nc + sync" adds a `sync -f <dest>`
 *   (syncfs of the receiving file system), because sockxfer fsyncs every file before it
 *   commits it.
 * - sockxfer: `sockxfer receive --once` (listening before the clock starts) and
 *   `sockxfer send <tree> 127.0.0.1:PORT` over TCP; timed from the sender's spawn until both
 *   exited; the sender's own done-event `seconds` is reported too.
 *
 * Every round checks both outputs: the same number of files and a SHA-256 over every file's
 * relative path and content equal to the source tree's. Rounds alternate the order. A failed
 * run is recorded (and counts against the bar) instead of ending the benchmark.
 */
import { createCipheriv, createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BIN, NODE_FLAGS, describeExit, formatBytes, freePort, median, readPeakRssKiB, runCommand, start, waitListening, type Exit, type JsonEvent, type Proc } from './lib.js';
import { errorText, f0, f1, f2, f3, lastLines, row, rssMB, stdoutClosed } from './common.js';

/** Files per folder of the generated tree. */
export const SMALL_FILES_PER_DIR = 100;
/** The content's seed (AES-256-CTR keystream keyed by it): the same tree every run. */
export const SMALL_SEED = 1;
/** The bar: sockxfer's wall time at most this many times tar|nc's (median of per-round ratios). */
export const SMALL_BAR_RATIO = 2;
const TREE_NAME = 'small-tree';

// ---------------------------------------------------------------------------------------------
// Processes shared with the resume section

/** sockxfer with the bin's Node flags, wrapped in GNU time (peak RSS) when `gnuTime` is set. */
export function sockxferProc(name: string, args: string[], gnuTime: string | null, rssFile: string | null): Proc {
  const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
  if (gnuTime && rssFile) return start(name, gnuTime, ['-f', '%M', '-o', rssFile, process.execPath, ...NODE_FLAGS, BIN, ...args], stdio);
  return start(name, process.execPath, [...NODE_FLAGS, BIN, ...args], stdio);
}

export function hasExited(p: Proc): boolean {
  return p.child.exitCode !== null || p.child.signalCode !== null;
}

/** SIGKILL to the process's group (a wrapper and what it runs), then waits (at most 5 s) for it. */
export async function killProc(p: Proc): Promise<void> {
  if (hasExited(p) || p.child.pid === undefined) return;
  try {
    process.kill(-p.child.pid, 'SIGKILL');
  } catch {
    try {
      p.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await Promise.race([p.exited, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
}

/** Waits for the exit, at most `ms` (then kills the group): the exit, or null when it had to be killed. */
export async function settle(p: Proc, ms: number): Promise<Exit | null> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  clearTimeout(timer);
  if (r) return r;
  await killProc(p);
  return null;
}

export function exitText(p: Proc, x: Exit | null, t0: number, limitMs: number): string {
  return x
    ? `${describeExit(x)} after ${((x.at - t0) / 1000).toFixed(1)} s${x.code === 0 ? '' : `; stderr: ${lastLines(p.stderr(), 3)}`}`
    : `still running after ${limitMs / 1000} s (killed); stderr: ${lastLines(p.stderr(), 3)}`;
}

export function lastEvent(p: Proc, name: string): JsonEvent | undefined {
  return [...p.events].reverse().find((e) => e.event === name);
}

// ---------------------------------------------------------------------------------------------
// The tree

export interface TreeDigest {
  files: number;
  bytes: number;
  /** SHA-256 over every regular file's relative path, size and content, in sorted path order. */
  sha256: string;
}

/** Regular files under `root`, as sorted relative paths (with "/"). */
async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await fsp.readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else if (e.isFile()) out.push(r);
      else out.push(`${r} (not a regular file)`);
    }
  };
  await walk(root, '');
  return out;
}

export async function treeDigest(root: string): Promise<TreeDigest> {
  const hash = createHash('sha256');
  let bytes = 0;
  const files = await listFiles(root);
  for (const rel of files) {
    const data = await fsp.readFile(path.join(root, ...rel.split('/')));
    hash.update(`${rel}\0${data.length}\0`);
    hash.update(data);
    bytes += data.length;
  }
  return { files: files.length, bytes, sha256: hash.digest('hex') };
}

/** `files` files of `size` seeded pseudo-random bytes, SMALL_FILES_PER_DIR per folder, under root/TREE_NAME. */
async function makeTree(root: string, files: number, size: number, seed: number): Promise<string> {
  const tree = path.join(root, TREE_NAME);
  const key = createHash('sha256').update(`sockxfer-bench-small:${seed}`).digest();
  const stream = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(size);
  const dirs = Math.ceil(files / SMALL_FILES_PER_DIR);
  const dw = String(dirs - 1).length;
  const fw = String(SMALL_FILES_PER_DIR - 1).length;
  for (let d = 0, n = 0; d < dirs; d++) {
    const dir = path.join(tree, `d${String(d).padStart(dw, '0')}`);
    await fsp.mkdir(dir, { recursive: true });
    for (let i = 0; i < SMALL_FILES_PER_DIR && n < files; i++, n++) {
      await fsp.writeFile(path.join(dir, `f${String(i).padStart(fw, '0')}.bin`), stream.update(zeros));
    }
  }
  return tree;
}

// ---------------------------------------------------------------------------------------------
// Runs

export type SmallVariant = 'tarnc' | 'sockxfer';

export const SMALL_LABEL: Record<SmallVariant, string> = { tarnc: 'tar|nc', sockxfer: 'sockxfer tcp' };

export interface SmallRun {
  round: number;
  variant: SmallVariant;
  error?: string;
  /** From the sending side's start until both sides exited. */
  seconds?: number;
  /** tar|nc: the `sync -f <dest>` after both exited. */
  syncSeconds?: number;
  /** sockxfer: the sender's own done-event `seconds` (no process start-up). */
  transferSeconds?: number;
  /** sockxfer: from the sender's spawn until the sender exited. */
  senderSeconds?: number;
  senderPeakRssKiB?: number | null;
  receiverPeakRssKiB?: number | null;
  /** Files found in the output, and whether their digest equals the source's. */
  outputFiles?: number;
  verified?: boolean;
  /** sockxfer: the sender's and receiver's done events. */
  sent?: JsonEvent;
  received?: JsonEvent;
}

interface SmallCtx {
  work: string;
  tree: string;
  source: TreeDigest;
  nc: string | null;
  gnuTime: string | null;
  limitMs: number;
  /** Counter for fresh output folders. */
  next: number;
}

/**
 * A fresh empty output folder; dirty pages of earlier runs written back first. Outputs stay until
 * the section ends (runSmall removes them all): on ext4 without a journal (this machine's root
 * filesystem) the inode allocator skips, one by one, every inode freed in the last minutes
 * (recently_deleted() in fs/ext4/ialloc.c), so removing one round's 2,000 files made each file
 * the next round created cost up to half a millisecond, whichever variant ran next.
 */
async function freshDest(ctx: SmallCtx): Promise<string> {
  const dest = path.join(ctx.work, `out-${ctx.next++}`);
  await fsp.mkdir(dest);
  const r = await runCommand('sync', [], 120_000);
  if (r.code !== 0) throw new Error(`sync failed: ${r.stderr.trim()}`);
  return dest;
}

async function verifyTree(ctx: SmallCtx, dir: string, what: string): Promise<number> {
  const st = await fsp.stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new Error(`${what}: no output folder ${dir}`);
  const got = await treeDigest(dir);
  if (got.files !== ctx.source.files) throw new Error(`${what}: ${got.files} files in the output, the source has ${ctx.source.files}`);
  if (got.sha256 !== ctx.source.sha256) throw new Error(`${what}: the output's tree digest ${got.sha256} differs from the source's ${ctx.source.sha256} (${got.bytes} vs ${ctx.source.bytes} bytes)`);
  return got.files;
}

async function runTarNc(ctx: SmallCtx, round: number): Promise<SmallRun> {
  const nc = ctx.nc!;
  const dest = await freshDest(ctx);
  const port = await freePort();
  const procs: Proc[] = [];
  try {
    const recv = start('tar|nc receiver', '/bin/bash', ['-c', 'set -o pipefail; "$1" -l 127.0.0.1 "$2" | tar x -C "$3"', 'bash', nc, String(port), dest], ['ignore', 'ignore', 'pipe']);
    procs.push(recv);
    await waitListening(port, recv, 5000);
    const send = start(
      'tar|nc sender',
      '/bin/bash',
      ['-c', 'set -o pipefail; tar c -C "$1" "$2" | "$3" -N 127.0.0.1 "$4"', 'bash', path.dirname(ctx.tree), path.basename(ctx.tree), nc, String(port)],
      ['ignore', 'ignore', 'pipe'],
    );
    procs.push(send);
    const [xs, xr] = await Promise.all([settle(send, ctx.limitMs), settle(recv, ctx.limitMs)]);
    if (!xs || !xr || xs.code !== 0 || xr.code !== 0) {
      throw new Error(`tar|nc failed. sender: ${exitText(send, xs, send.started, ctx.limitMs)}. receiver: ${exitText(recv, xr, send.started, ctx.limitMs)}`);
    }
    const seconds = (Math.max(xs.at, xr.at) - send.started) / 1000;
    const t0 = performance.now();
    const s = await runCommand('sync', ['-f', dest], 120_000);
    const syncSeconds = (performance.now() - t0) / 1000;
    if (s.code !== 0) throw new Error(`sync -f ${dest} failed: ${s.stderr.trim()}`);
    const outputFiles = await verifyTree(ctx, path.join(dest, path.basename(ctx.tree)), 'tar|nc');
    return { round, variant: 'tarnc', seconds, syncSeconds, outputFiles, verified: true };
  } finally {
    for (const p of procs) await killProc(p);
  }
}

async function runSockxferTree(ctx: SmallCtx, round: number): Promise<SmallRun> {
  const dest = await freshDest(ctx);
  const recvRss = path.join(ctx.work, 'rss-receiver');
  const sendRss = path.join(ctx.work, 'rss-sender');
  await fsp.rm(recvRss, { force: true });
  await fsp.rm(sendRss, { force: true });
  const procs: Proc[] = [];
  try {
    const recv = sockxferProc('sockxfer receive', ['receive', '--port', '0', '--host', '127.0.0.1', '--transport', 'tcp', '--once', '--dir', dest, '--json'], ctx.gnuTime, recvRss);
    procs.push(recv);
    const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
    const send = sockxferProc('sockxfer send', ['send', ctx.tree, `127.0.0.1:${String(listening.port)}`, '--json'], ctx.gnuTime, sendRss);
    procs.push(send);
    const [xs, xr] = await Promise.all([settle(send, ctx.limitMs), settle(recv, ctx.limitMs)]);
    if (!xs || !xr || xs.code !== 0 || xr.code !== 0) {
      throw new Error(`sockxfer failed. sender: ${exitText(send, xs, send.started, ctx.limitMs)}. receiver: ${exitText(recv, xr, send.started, ctx.limitMs)}`);
    }
    const seconds = (Math.max(xs.at, xr.at) - send.started) / 1000;
    const senderSeconds = (xs.at - send.started) / 1000;
    await Promise.all([stdoutClosed(send), stdoutClosed(recv)]);
    const sent = lastEvent(send, 'done');
    const received = lastEvent(recv, 'done');
    if (!sent || !received) throw new Error(`sockxfer: exit 0 but no done event from the ${sent ? 'receiver' : 'sender'}`);
    if (sent.files !== ctx.source.files || received.files !== ctx.source.files || sent.failed !== 0 || received.failed !== 0 || sent.bytes !== ctx.source.bytes) {
      throw new Error(`sockxfer: unexpected counts: sender ${JSON.stringify(sent)}; receiver ${JSON.stringify(received)}`);
    }
    const outputFiles = await verifyTree(ctx, path.join(dest, path.basename(ctx.tree)), 'sockxfer');
    return {
      round,
      variant: 'sockxfer',
      seconds,
      senderSeconds,
      transferSeconds: typeof sent.seconds === 'number' ? sent.seconds : NaN,
      senderPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(sendRss) : null,
      receiverPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(recvRss) : null,
      outputFiles,
      verified: true,
      sent,
      received,
    };
  } finally {
    for (const p of procs) await killProc(p);
  }
}

// ---------------------------------------------------------------------------------------------
// Printing and the section

export function smallBarName(files: number, size: number): string {
  const sz = size % 1024 === 0 && size < 1024 * 1024 ? `${size / 1024} KiB` : formatBytes(size);
  return `sockxfer ${files.toLocaleString('en-US')} × ${sz} ≤ ${SMALL_BAR_RATIO} × tar|nc (same run)`;
}

const W = [20, 9, 9, 9, 10, 13, 13, 11, 12, 8];

function printRound(runs: SmallRun[], files: number, round: number, rounds: number, order: SmallVariant[]): void {
  console.log(`\nsmall round ${round + 1} of ${rounds} (order: ${order.map((v) => SMALL_LABEL[v]).join(', ')})`);
  console.log(row(['variant', 'wall s', 'sync s', 'xfer s', 'files/s', 'vs tar|nc', 'vs +sync', 'sender RSS', 'receiver RSS', 'check'], W));
  const ref = runs.find((r) => r.variant === 'tarnc' && !r.error);
  for (const r of runs) {
    if (r.error) {
      console.log(row([SMALL_LABEL[r.variant], 'FAILED', '', '', '', '', '', '', '', ''], W));
      console.log(`    ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
      continue;
    }
    const check = r.verified ? `${r.outputFiles} ok` : '-';
    if (r.variant === 'tarnc') {
      console.log(row([SMALL_LABEL.tarnc, f3(r.seconds), '-', '-', f0(files / r.seconds!), '1.00', '-', '-', '-', check], W));
      const s = r.seconds! + r.syncSeconds!;
      console.log(row([`${SMALL_LABEL.tarnc} + sync`, f3(s), f3(r.syncSeconds), '-', f0(files / s), '-', '1.00', '-', '-', ''], W));
    } else {
      const vs = ref ? r.seconds! / ref.seconds! : null;
      const vsSync = ref ? r.seconds! / (ref.seconds! + ref.syncSeconds!) : null;
      console.log(
        row(
          [SMALL_LABEL.sockxfer, f3(r.seconds), '-', f3(r.transferSeconds), f0(files / r.seconds!), f2(vs), f2(vsSync), `${f1(rssMB(r.senderPeakRssKiB))} MB`, `${f1(rssMB(r.receiverPeakRssKiB))} MB`, check],
          W,
        ),
      );
    }
  }
}

export function smallSummary(all: SmallRun[], files: number, size: number) {
  const ok = all.filter((r) => !r.error);
  const of = (v: SmallVariant) => ok.filter((r) => r.variant === v);
  const refOf = (round: number) => ok.find((r) => r.variant === 'tarnc' && r.round === round);
  const pairs = of('sockxfer').flatMap((r) => {
    const ref = refOf(r.round);
    return ref ? [{ x: r, ref }] : [];
  });
  const ratio = median(pairs.map((p) => p.x.seconds! / p.ref.seconds!));
  const ratioSync = median(pairs.map((p) => p.x.seconds! / (p.ref.seconds! + p.ref.syncSeconds!)));
  const failedRuns = all.length - ok.length;
  const maxRss = (key: 'senderPeakRssKiB' | 'receiverPeakRssKiB') => {
    const xs = of('sockxfer').map((r) => r[key]).filter((x): x is number => typeof x === 'number');
    return xs.length ? Math.max(...xs) : null;
  };
  return {
    tarNc: {
      medianSeconds: median(of('tarnc').map((r) => r.seconds!)),
      medianSyncSeconds: median(of('tarnc').map((r) => r.syncSeconds!)),
      medianSecondsWithSync: median(of('tarnc').map((r) => r.seconds! + r.syncSeconds!)),
    },
    sockxfer: {
      medianSeconds: median(of('sockxfer').map((r) => r.seconds!)),
      medianSenderSeconds: median(of('sockxfer').map((r) => r.senderSeconds!)),
      medianTransferSeconds: median(of('sockxfer').map((r) => r.transferSeconds!)),
      medianFilesPerSecond: median(of('sockxfer').map((r) => files / r.seconds!)),
      maxSenderPeakRssMB: rssMB(maxRss('senderPeakRssKiB')),
      maxReceiverPeakRssMB: rssMB(maxRss('receiverPeakRssKiB')),
    },
    /** Medians of the per-round ratios of wall times (lower is better for sockxfer). */
    medianRatioVsTarNc: ratio,
    medianRatioVsTarNcWithSync: ratioSync,
    pairedRounds: pairs.length,
    failedRuns,
    bar: {
      name: smallBarName(files, size),
      maxRatio: SMALL_BAR_RATIO,
      value: ratio,
      // A failed run fails the bar: it is not a measurement to leave out quietly.
      pass: ratio !== null && ratio <= SMALL_BAR_RATIO && failedRuns === 0,
    },
  };
}

export interface SmallResult {
  files: number;
  fileSize: number;
  folders: number;
  rounds: number;
  seed: number;
  sourceTreeSha256: string;
  runs: SmallRun[];
  summary: ReturnType<typeof smallSummary>;
}

export async function runSmall(work: string, files: number, size: number, rounds: number, nc: string | null, gnuTime: string | null): Promise<SmallResult> {
  const folders = Math.ceil(files / SMALL_FILES_PER_DIR);
  console.log(
    `\n== small files: ${files.toLocaleString('en-US')} files × ${formatBytes(size)} in ${folders} folder(s), tree to tree over 127.0.0.1, ${rounds} round(s): ${nc ? 'tar|nc, ' : ''}sockxfer tcp (xxh128)`,
  );
  if (!nc) console.log('  tar|nc reference skipped (no OpenBSD nc): ratios are n/a and the bar FAILs.');
  const dir = path.join(work, 'small');
  await fsp.mkdir(dir);
  try {
    const g0 = performance.now();
    const tree = await makeTree(path.join(dir), files, size, SMALL_SEED);
    const source = await treeDigest(tree);
    console.log(`  source: ${source.files} files, ${formatBytes(source.bytes)} (seed ${SMALL_SEED}) in ${((performance.now() - g0) / 1000).toFixed(1)} s; tree SHA-256 ${source.sha256}`);
    const ctx: SmallCtx = { work: dir, tree, source, nc, gnuTime, limitMs: 60_000 + files * 30, next: 0 };
    const all: SmallRun[] = [];
    for (let k = 0; k < rounds; k++) {
      const forward: SmallVariant[] = nc ? ['tarnc', 'sockxfer'] : ['sockxfer'];
      const order = k % 2 === 0 ? forward : [...forward].reverse();
      const runs: SmallRun[] = [];
      for (const v of order) {
        try {
          runs.push(v === 'tarnc' ? await runTarNc(ctx, k) : await runSockxferTree(ctx, k));
        } catch (err) {
          runs.push({ round: k, variant: v, error: errorText(err) });
        }
      }
      printRound(runs, files, k, rounds, order);
      all.push(...runs);
    }
    const s = smallSummary(all, files, size);
    console.log(`\nsmall summary: ${files.toLocaleString('en-US')} × ${formatBytes(size)}, ${rounds} round(s), medians; ratios = medians of the per-round sockxfer/tar|nc wall-time ratios (lower is better)${s.failedRuns ? `; ${s.failedRuns} run(s) FAILED (left out)` : ''}`);
    const w = [20, 9, 9, 13, 13];
    console.log(row(['variant', 'wall s', 'files/s', 'vs tar|nc', 'vs +sync'], w));
    const fps = (x: number | null) => (x === null ? null : files / x);
    console.log(row([SMALL_LABEL.tarnc, f3(s.tarNc.medianSeconds), f0(fps(s.tarNc.medianSeconds)), nc ? '1.00' : 'n/a', '-'], w));
    console.log(row([`${SMALL_LABEL.tarnc} + sync`, f3(s.tarNc.medianSecondsWithSync), f0(fps(s.tarNc.medianSecondsWithSync)), '-', nc ? '1.00' : 'n/a'], w));
    console.log(row([SMALL_LABEL.sockxfer, f3(s.sockxfer.medianSeconds), f0(s.sockxfer.medianFilesPerSecond), f2(s.medianRatioVsTarNc), f2(s.medianRatioVsTarNcWithSync)], w));
    console.log(`  sockxfer sender's own seconds (done event): ${f3(s.sockxfer.medianTransferSeconds)} (median); sender spawn to sender exit: ${f3(s.sockxfer.medianSenderSeconds)}`);
    console.log(`  tar|nc: sync -f of the output took ${f3(s.tarNc.medianSyncSeconds)} s (median)`);
    console.log(`  peak RSS (max over the sockxfer runs): sender ${f1(s.sockxfer.maxSenderPeakRssMB)} MB, receiver ${f1(s.sockxfer.maxReceiverPeakRssMB)} MB`);
    console.log('  tar|nc: timed from the start of `tar c | nc -N` until it and `nc -l | tar x` (listening beforehand) exited; "+ sync" adds `sync -f <dest>` (syncfs) after that.');
    console.log('  sockxfer: timed from the sender\'s spawn until sender and receiver (listening beforehand) exited; it fsyncs every file before committing it.');
    console.log('  check: file count and a SHA-256 over every relative path and content, equal to the source tree\'s, every round, both variants.');
    console.log(`  BAR ${s.bar.name}: ${f2(s.bar.value)} -> ${s.bar.pass ? 'PASS' : 'FAIL'}`);
    return { files, fileSize: size, folders, rounds, seed: SMALL_SEED, sourceTreeSha256: source.sha256, runs: all, summary: s };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
