/**
 * The `resume` section of `npm run bench`: how much an interrupted transfer saves when it is
 * sent again. Over TCP, then over UDP, each round:
 *
 * 1. full: the file sent at full speed to a fresh folder (its done event's sentBytes = the size).
 * 2. interrupted: to another fresh folder, slowed with --rate so that it would take about
 *    RESUME_TARGET_SECONDS; the SENDER is killed with SIGKILL once its progress events pass
 *    half the file. The receiver (--once, a short --timeout) notices and exits by itself.
 * 3. resumed: the same file sent again at full speed to a new receiver on that folder; its done
 *    event's sentBytes is what the resume had to send.
 *
 * Reported: resumed sentBytes / full sentBytes, and the time of each run (sender spawn until both
 * ends exited, receivers listening beforehand). Both outputs are checked with SHA-256 against
 * the source. A failed run is recorded instead of ending the benchmark.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describeExit, formatBytes, median, randomFile, sha256File, type Exit, type JsonEvent, type Proc } from './lib.js';
import { errorText, f1, f2, f3, pct, row, stdoutClosed } from './common.js';
import { exitText, killProc, lastEvent, settle, sockxferProc } from './small.js';

/** The interrupted run's --rate makes it take about this long. */
export const RESUME_TARGET_SECONDS = 4;
/** The sender is killed once its progress passes this fraction of the file. */
export const RESUME_KILL_AT = 0.5;
/** The receivers' --timeout: how soon the first one gives up on the killed sender (UDP has no RST). */
const RECEIVER_TIMEOUT_S = 5;

export type ResumeTransport = 'tcp' | 'udp';

export interface SendStats {
  /** Sender spawn until both sender and receiver exited. */
  seconds: number;
  /** Sender spawn until the sender exited. */
  senderSeconds: number;
  /** The sender's done-event seconds. */
  transferSeconds: number;
  sentBytes: number;
  /** Was sentBytes in the done event (else it is the size)? */
  sentBytesReported: boolean;
  verified: 'sha256';
}

export interface InterruptStats {
  rateBitsPerSecond: number;
  /** Sender spawn until the SIGKILL. */
  killedAfterSeconds: number;
  /** The progress event's bytes that triggered the kill. */
  progressBytesAtKill: number;
  /** How the first receiver ended, and its error code (if it printed an error event). */
  receiverExit: string;
  receiverError: string | null;
  /** Bytes the receiver's resume journal claimed durable after the interruption (informational). */
  journalDurableBytes: number | null;
}

export interface ResumeRun {
  round: number;
  transport: ResumeTransport;
  error?: string;
  full?: SendStats;
  interrupted?: InterruptStats;
  resumed?: SendStats;
  /** resumed.sentBytes / full.sentBytes. */
  sentRatio?: number;
  /** resumed.seconds / full.seconds. */
  timeRatio?: number;
}

interface ResumeCtx {
  work: string;
  src: string;
  size: number;
  srcSha256: string;
  rateBits: number;
  limitMs: number;
  next: number;
}

function receiverArgs(dest: string, transport: ResumeTransport): string[] {
  return ['receive', '--port', '0', '--host', '127.0.0.1', '--transport', transport, '--once', '--dir', dest, '--json', '--timeout', String(RECEIVER_TIMEOUT_S)];
}

function senderArgs(ctx: ResumeCtx, port: unknown, transport: ResumeTransport, rate: number | null): string[] {
  const a = ['send', ctx.src, `127.0.0.1:${String(port)}`, '--json'];
  if (transport === 'udp') a.push('--udp');
  if (rate !== null) a.push('--rate', String(rate));
  return a;
}

async function freshDest(ctx: ResumeCtx, what: string): Promise<string> {
  const dest = path.join(ctx.work, `out-${ctx.next++}-${what}`);
  await fsp.mkdir(dest);
  return dest;
}

/** One send at full speed into `dest` (a fresh receiver, listening first); checks the output. */
async function timedSend(ctx: ResumeCtx, dest: string, transport: ResumeTransport, label: string): Promise<SendStats> {
  const procs: Proc[] = [];
  try {
    const recv = sockxferProc(`${label} receive`, receiverArgs(dest, transport), null, null);
    procs.push(recv);
    const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
    const send = sockxferProc(`${label} send`, senderArgs(ctx, listening.port, transport, null), null, null);
    procs.push(send);
    const [xs, xr] = await Promise.all([settle(send, ctx.limitMs), settle(recv, ctx.limitMs)]);
    if (!xs || !xr || xs.code !== 0 || xr.code !== 0) {
      throw new Error(`${label} failed. sender: ${exitText(send, xs, send.started, ctx.limitMs)}. receiver: ${exitText(recv, xr, send.started, ctx.limitMs)}`);
    }
    const seconds = (Math.max(xs.at, xr.at) - send.started) / 1000;
    const senderSeconds = (xs.at - send.started) / 1000;
    await Promise.all([stdoutClosed(send), stdoutClosed(recv)]);
    const sent = lastEvent(send, 'done');
    const got = lastEvent(recv, 'done');
    if (!sent || !got) throw new Error(`${label}: exit 0 but no done event from the ${sent ? 'receiver' : 'sender'}`);
    if (sent.bytes !== ctx.size || got.bytes !== ctx.size || sent.hash !== got.hash) throw new Error(`${label}: sender and receiver disagree: ${JSON.stringify(sent)} vs ${JSON.stringify(got)}`);
    const out = path.join(dest, path.basename(ctx.src));
    const st = await fsp.stat(out).catch(() => null);
    if (!st || st.size !== ctx.size) throw new Error(`${label}: output ${out} ${st ? `has ${st.size} bytes, the source ${ctx.size}` : 'is missing'}`);
    const sha = await sha256File(out);
    if (sha !== ctx.srcSha256) throw new Error(`${label}: output SHA-256 ${sha} differs from the source's ${ctx.srcSha256}`);
    const reported = typeof sent.sentBytes === 'number';
    return {
      seconds,
      senderSeconds,
      transferSeconds: typeof sent.seconds === 'number' ? sent.seconds : NaN,
      sentBytes: reported ? (sent.sentBytes as number) : ctx.size,
      sentBytesReported: reported,
      verified: 'sha256',
    };
  } finally {
    for (const p of procs) await killProc(p);
  }
}

/** Sum of the byte ranges the resume journals in dest claim durable, or null when there is none. */
async function journalDurableBytes(dest: string): Promise<number | null> {
  const dir = path.join(dest, '.sockxfer-partial');
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  let total: number | null = null;
  for (const n of names.filter((x) => x.endsWith('.journal'))) {
    try {
      const j = JSON.parse(await fsp.readFile(path.join(dir, n), 'utf8')) as { ranges?: Array<[number, number]> };
      total = (total ?? 0) + (j.ranges ?? []).reduce((s, r) => s + (r[1] - r[0]), 0);
    } catch {
      /* unreadable: not counted */
    }
  }
  return total;
}

/** The slowed send into `dest`, its sender killed with SIGKILL past RESUME_KILL_AT of the file. */
async function interruptedSend(ctx: ResumeCtx, dest: string, transport: ResumeTransport): Promise<InterruptStats> {
  const label = `interrupted ${transport}`;
  const procs: Proc[] = [];
  try {
    const recv = sockxferProc(`${label} receive`, receiverArgs(dest, transport), null, null);
    procs.push(recv);
    const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
    const send = sockxferProc(`${label} send`, senderArgs(ctx, listening.port, transport, ctx.rateBits), null, null);
    procs.push(send);
    const past = (e: JsonEvent) => e.event === 'progress' && typeof e.bytes === 'number' && e.bytes > RESUME_KILL_AT * ctx.size;
    let trigger: JsonEvent;
    try {
      trigger = await send.waitFor(past, ctx.limitMs);
    } catch (err) {
      // Exited first (e.g. finished before a progress event past the mark) or too slow.
      const last = [...send.events].reverse().find((e) => e.event === 'progress' || e.event === 'error' || e.event === 'done');
      throw new Error(`${label}: the sender never reported more than ${pct(RESUME_KILL_AT, 0)} (last event ${last ? JSON.stringify(last) : 'none'}): ${errorText(err).split('\n')[0]}`);
    }
    await killProc(send);
    const xs = await send.exited;
    const killedAfterSeconds = (xs.at - send.started) / 1000;
    if (xs.signal !== 'SIGKILL') throw new Error(`${label}: the sender ended by itself (${exitText(send, xs, send.started, ctx.limitMs)}) before the SIGKILL`);
    // The receiver should notice (TCP: the connection resets; UDP: its --timeout) and exit.
    const waitMs = (RECEIVER_TIMEOUT_S + 20) * 1000;
    let xr: Exit | null = await Promise.race([recv.exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), waitMs).unref())]);
    let receiverExit: string;
    if (xr) receiverExit = `${describeExit(xr)}, ${((xr.at - xs.at) / 1000).toFixed(1)} s after the kill`;
    else {
      recv.child.kill('SIGTERM');
      xr = await settle(recv, 5000);
      receiverExit = `still running ${waitMs / 1000} s after the kill: stopped with SIGTERM (${xr ? exitText(recv, xr, xs.at, 5000).split(';')[0] : 'then SIGKILL'})`;
    }
    await stdoutClosed(recv);
    const err = lastEvent(recv, 'error');
    return {
      rateBitsPerSecond: ctx.rateBits,
      killedAfterSeconds,
      progressBytesAtKill: trigger.bytes as number,
      receiverExit,
      receiverError: err ? `${String(err.code)}: ${String(err.message)}` : null,
      journalDurableBytes: await journalDurableBytes(dest),
    };
  } finally {
    for (const p of procs) await killProc(p);
  }
}

async function resumeRound(ctx: ResumeCtx, transport: ResumeTransport, round: number): Promise<ResumeRun> {
  const run: ResumeRun = { round, transport };
  const fullDest = await freshDest(ctx, `${transport}-full`);
  const resDest = await freshDest(ctx, `${transport}-resume`);
  try {
    run.full = await timedSend(ctx, fullDest, transport, `full ${transport}`);
    await fsp.rm(fullDest, { recursive: true, force: true });
    run.interrupted = await interruptedSend(ctx, resDest, transport);
    run.resumed = await timedSend(ctx, resDest, transport, `resumed ${transport}`);
    run.sentRatio = run.resumed.sentBytes / run.full.sentBytes;
    run.timeRatio = run.resumed.seconds / run.full.seconds;
  } catch (err) {
    run.error = errorText(err);
  } finally {
    await fsp.rm(fullDest, { recursive: true, force: true });
    await fsp.rm(resDest, { recursive: true, force: true });
  }
  return run;
}

// ---------------------------------------------------------------------------------------------

const W = [26, 9, 9, 14, 9, 8];

function printRun(r: ResumeRun, size: number, rounds: number): void {
  console.log(`\nresume ${r.transport} round ${r.round + 1} of ${rounds}`);
  console.log(row(['run', 'wall s', 'xfer s', 'sentBytes', 'of file', 'check'], W));
  const line = (name: string, s: SendStats | undefined) => {
    if (s) console.log(row([name, f3(s.seconds), f3(s.transferSeconds), `${s.sentBytes}${s.sentBytesReported ? '' : '*'}`, pct(s.sentBytes / size, 1), 'sha256 ok'], W));
  };
  line('full send (fresh folder)', r.full);
  const i = r.interrupted;
  if (i) {
    console.log(row([`interrupted (--rate ${f1(i.rateBitsPerSecond / 1e6)}M)`, f3(i.killedAfterSeconds), '-', `${i.progressBytesAtKill}`, pct(i.progressBytesAtKill / size, 1), 'SIGKILL'], W));
    console.log(`    wall s: sender spawn to SIGKILL; sender killed at its progress event of ${formatBytes(i.progressBytesAtKill)}; receiver: ${i.receiverExit}${i.receiverError ? ` (${i.receiverError})` : ''}`);
    console.log(`    receiver's journal then claimed ${i.journalDurableBytes === null ? 'nothing (no journal)' : `${formatBytes(i.journalDurableBytes)} (${pct(i.journalDurableBytes / size, 1)}) durable`}`);
  }
  line('resumed (full speed)', r.resumed);
  if (r.error) console.log(`  FAILED: ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
  if (r.sentRatio !== undefined) console.log(`  resumed/full: sentBytes ${f3(r.sentRatio)}, wall time ${f2(r.timeRatio)}`);
  if ((r.full && !r.full.sentBytesReported) || (r.resumed && !r.resumed.sentBytesReported)) console.log('  * no sentBytes in the done event: counted as the whole file');
}

function transportSummary(runs: ResumeRun[]) {
  const ok = runs.filter((r) => !r.error && r.full && r.resumed);
  return {
    runs: runs.length,
    failedRuns: runs.length - ok.length,
    medianSentRatio: median(ok.map((r) => r.sentRatio!)),
    medianResumedSentBytes: median(ok.map((r) => r.resumed!.sentBytes)),
    medianFullSentBytes: median(ok.map((r) => r.full!.sentBytes)),
    medianFullSeconds: median(ok.map((r) => r.full!.seconds)),
    medianResumedSeconds: median(ok.map((r) => r.resumed!.seconds)),
    medianFullTransferSeconds: median(ok.map((r) => r.full!.transferSeconds)),
    medianResumedTransferSeconds: median(ok.map((r) => r.resumed!.transferSeconds)),
    medianTimeRatio: median(ok.map((r) => r.timeRatio!)),
    medianKilledAtFraction: median(ok.map((r) => r.interrupted!.progressBytesAtKill / (r.full!.sentBytes || 1))),
    firstError: runs.find((r) => r.error)?.error ?? null,
  };
}

export interface ResumeResult {
  size: number;
  rounds: number;
  rateBitsPerSecond: number;
  killAtFraction: number;
  receiverTimeoutSeconds: number;
  sourceSha256: string;
  runs: ResumeRun[];
  summary: { tcp: ReturnType<typeof transportSummary>; udp: ReturnType<typeof transportSummary> };
}

export async function runResume(work: string, size: number, rounds: number): Promise<ResumeResult> {
  // A whole number of bits per second that makes the file take about RESUME_TARGET_SECONDS.
  const rateBits = Math.max(8000, Math.round((size * 8) / RESUME_TARGET_SECONDS));
  console.log(
    `\n== resume: ${formatBytes(size)} file over 127.0.0.1, ${rounds} round(s) per transport (tcp, then udp): full send; send at --rate ${f1(rateBits / 1e6)} Mbit/s (~${RESUME_TARGET_SECONDS} s) with the sender SIGKILLed past ${pct(RESUME_KILL_AT, 0)}; resumed send at full speed`,
  );
  const dir = path.join(work, 'resume');
  await fsp.mkdir(dir);
  try {
    const src = path.join(dir, 'resume-source.bin');
    const g0 = performance.now();
    const srcSha256 = await randomFile(src, size);
    console.log(`  source: ${formatBytes(size)} of random bytes in ${((performance.now() - g0) / 1000).toFixed(1)} s, SHA-256 ${srcSha256}`);
    const ctx: ResumeCtx = { work: dir, src, size, srcSha256, rateBits, limitMs: 60_000 + Math.ceil((size / 5e6) * 1000), next: 0 };
    const runs: ResumeRun[] = [];
    for (const transport of ['tcp', 'udp'] as const) {
      for (let k = 0; k < rounds; k++) {
        const r = await resumeRound(ctx, transport, k);
        printRun(r, size, rounds);
        runs.push(r);
      }
    }
    const summary = { tcp: transportSummary(runs.filter((r) => r.transport === 'tcp')), udp: transportSummary(runs.filter((r) => r.transport === 'udp')) };
    console.log(`\nresume summary: ${formatBytes(size)}, ${rounds} round(s) per transport, medians; sentBytes from the senders' done events`);
    const w = [10, 13, 15, 12, 15, 13, 13, 10];
    console.log(row(['transport', 'full sent', 'resumed sent', 'sent ratio', 'killed at', 'full wall s', 'resumed s', 'time ratio'], w));
    for (const t of ['tcp', 'udp'] as const) {
      const s = summary[t];
      if (s.failedRuns === s.runs) {
        console.log(row([t, 'FAILED', '', '', '', '', '', ''], w));
        continue;
      }
      console.log(
        row([t, f0n(s.medianFullSentBytes), f0n(s.medianResumedSentBytes), f3(s.medianSentRatio), pct(s.medianKilledAtFraction, 1), f3(s.medianFullSeconds), f3(s.medianResumedSeconds), f2(s.medianTimeRatio)], w),
      );
    }
    for (const t of ['tcp', 'udp'] as const) if (summary[t].firstError) console.log(`  ${t}: ${summary[t].failedRuns} run(s) FAILED; first: ${summary[t].firstError!.split('\n')[0]}`);
    console.log('  sent ratio = resumed sentBytes / full sentBytes (lower is better; about 1 - the share the receiver kept durable); time ratio = resumed wall / full wall.');
    console.log('  wall: sender spawn until sender and receiver exited (receivers listen beforehand); every output checked with SHA-256 against the source.');
    return { size, rounds, rateBitsPerSecond: rateBits, killAtFraction: RESUME_KILL_AT, receiverTimeoutSeconds: RECEIVER_TIMEOUT_S, sourceSha256: srcSha256, runs, summary };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

function f0n(n: number | null): string {
  return n === null ? 'n/a' : String(Math.round(n));
}
