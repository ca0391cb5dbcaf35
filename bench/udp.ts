/**
 * The UDP sections of `npm run bench`:
 *
 * - loopback: a raw Node datagram blast (bench/blast.ts: one sender process, one receiver
 *   process), sockxfer over UDP and sockxfer over TCP, file to file over 127.0.0.1, paired in
 *   rounds with alternating order; medians of the per-round ratios.
 * - relay: sockxfer over UDP through bench/relay-process.ts (the seeded impairment relay, bound
 *   to 127.0.0.1) shaped to 100 Mbit/s with a 50 ms RTT, at several random-loss rates.
 *
 * A failed run is recorded (and counts as FAIL against a bar) instead of ending the benchmark;
 * every process a run started is stopped before the next run.
 */
import path from 'node:path';
import { NODE_FLAGS, describeExit, formatBytes, isShuttingDown, median, ROOT, start, stopAll, waitExit, type JsonEvent, type Proc } from './lib.js';
import { errorText, f0, f1, f2, f3, mbps, pct, prepare, row, rssMB, runXfer, stdoutClosed, VERIFIED_TEXT, type Context, type Verified, type XferResult } from './common.js';

const BLAST = path.join(ROOT, 'dist/bench/blast.js');
const RELAY = path.join(ROOT, 'dist/bench/relay-process.js');

/** The loopback section's datagram size: a full Ethernet payload on IPv4. */
export const LOOPBACK_DATAGRAM = 1472;
/** Blast: SO_RCVBUF asked for (Linux doubles it, and caps it at net.core.rmem_max). */
const BLAST_RCVBUF = 4 * 1024 * 1024;
/** Blast: sends between two setImmediate yields. */
const BLAST_YIELD_EVERY = 64;
/** Blast receiver: it ends after this long without a datagram. */
const BLAST_IDLE_MS = 500;
/** The issue's bar: sockxfer over UDP at least half the raw blast's received rate. */
export const UDP_VS_BLAST_BAR = 0.5;

// ---------------------------------------------------------------------------------------------
// Loopback: blast, sockxfer udp, sockxfer tcp

export type LoopVariant = 'blast' | 'udp' | 'tcp';

export const LOOP_LABEL: Record<LoopVariant, string> = {
  blast: 'raw dgram blast',
  udp: `sockxfer udp ${LOOPBACK_DATAGRAM}`,
  tcp: 'sockxfer tcp',
};

export interface BlastRun {
  round: number;
  variant: 'blast';
  error?: string;
  /** Datagrams the receiver was told to expect: ceil(size / 1472). */
  datagrams?: number;
  /** The sender's report: datagrams and bytes handed to the kernel without error, its send rate. */
  sent?: JsonEvent;
  /** The receiver's report: datagrams and bytes received, first to last datagram. */
  received?: JsonEvent;
  /** SO_RCVBUF the receiver got (as getsockopt reports it: Linux doubles the request). */
  rcvbuf?: number;
  /** Received bytes / (last datagram − first datagram), MB/s. */
  receivedMBps?: number;
  sentMBps?: number;
  /** Datagrams received / datagrams sent. */
  deliveredFraction?: number;
}

export interface XferRun {
  round: number;
  variant: 'udp' | 'tcp';
  error?: string;
  wallSeconds?: number;
  senderSeconds?: number;
  transferSeconds?: number;
  /** File bytes / wall seconds (sender spawn until both exited), MB/s. */
  wallMBps?: number;
  /** File bytes / the sender's done-event seconds, MB/s. */
  transferMBps?: number;
  senderPeakRssKiB?: number | null;
  receiverPeakRssKiB?: number | null;
  verified?: Verified;
  /** Informational: the receiver's rate between 10% and 90% of the file (progress events), MB/s. */
  steadyMBps?: number | null;
  /** The sender's and the receiver's done-event stats. */
  senderStats?: unknown;
  receiverStats?: unknown;
}

export type LoopRun = BlastRun | XferRun;

export interface LoopbackResult {
  size: number;
  rounds: number;
  datagramSize: number;
  sourceSha256: string;
  runs: LoopRun[];
  summary: ReturnType<typeof loopSummary>;
}

async function runBlast(ctx: Context, round: number): Promise<BlastRun> {
  await prepare(ctx); // the same starting state as the file transfers (it writes nothing itself)
  const count = Math.ceil(ctx.size / LOOPBACK_DATAGRAM);
  const maxSeconds = String(Math.ceil(ctx.limitMs / 1000));
  const stdio: ['pipe', 'pipe', 'pipe'] = ['pipe', 'pipe', 'pipe']; // stdin: they stop if the bench goes away
  const recv = start(
    'blast recv',
    process.execPath,
    [...NODE_FLAGS, BLAST, 'recv', '--host', '127.0.0.1', '--port', '0', '--expect', String(count), '--rcvbuf', String(BLAST_RCVBUF), '--idle-ms', String(BLAST_IDLE_MS), '--max-seconds', maxSeconds],
    stdio,
  );
  const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
  const send = start(
    'blast send',
    process.execPath,
    [...NODE_FLAGS, BLAST, 'send', '--host', '127.0.0.1', '--port', String(listening.port), '--count', String(count), '--size', String(LOOPBACK_DATAGRAM), '--yield-every', String(BLAST_YIELD_EVERY), '--max-seconds', maxSeconds],
    stdio,
  );
  const xs = await waitExit(send, ctx.limitMs + 10_000);
  if (xs.code !== 0) throw new Error(`blast send: ${describeExit(xs)}; stderr:\n${send.stderr().trim()}`);
  // The receiver ends by itself on the count or after BLAST_IDLE_MS of silence; if it has not
  // after a grace period, SIGTERM makes it report what it has.
  const grace = await Promise.race([recv.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), BLAST_IDLE_MS + 2000))]);
  if (!grace) recv.child.kill('SIGTERM');
  const xr = await waitExit(recv, 5000);
  if (xr.code !== 0) throw new Error(`blast recv: ${describeExit(xr)}; stderr:\n${recv.stderr().trim()}`);
  await Promise.all([stdoutClosed(send), stdoutClosed(recv)]);
  const sent = send.events.find((e) => e.event === 'sent');
  const received = recv.events.find((e) => e.event === 'received');
  if (!sent || !received) throw new Error(`blast: exit 0 but no report from the ${sent ? 'receiver' : 'sender'}`);
  const rate = received.bytesPerSecond;
  return {
    round,
    variant: 'blast',
    datagrams: count,
    sent,
    received,
    rcvbuf: listening.rcvbuf as number,
    receivedMBps: typeof rate === 'number' ? rate / 1e6 : NaN,
    sentMBps: typeof sent.bytesPerSecond === 'number' ? sent.bytesPerSecond / 1e6 : NaN,
    deliveredFraction: (sent.datagrams as number) > 0 ? (received.datagrams as number) / (sent.datagrams as number) : NaN,
  };
}

function xferRun(ctx: Context, round: number, variant: 'udp' | 'tcp', r: XferResult): XferRun {
  return {
    round,
    variant,
    wallSeconds: r.wallSeconds,
    senderSeconds: r.senderSeconds,
    transferSeconds: r.transferSeconds,
    wallMBps: mbps(ctx.size, r.wallSeconds),
    transferMBps: mbps(ctx.size, r.transferSeconds),
    senderPeakRssKiB: r.senderPeakRssKiB,
    receiverPeakRssKiB: r.receiverPeakRssKiB,
    verified: r.verified,
    steadyMBps: r.steadyBytesPerSecond === null ? null : r.steadyBytesPerSecond / 1e6,
    senderStats: r.sent.stats,
    receiverStats: r.received.stats,
  };
}

async function runLoopVariant(ctx: Context, round: number, v: LoopVariant, verifyHash: boolean): Promise<LoopRun> {
  try {
    if (v === 'blast') return await runBlast(ctx, round);
    const r = await runXfer(ctx, {
      label: LOOP_LABEL[v],
      hash: 'xxh128',
      transport: v,
      ...(v === 'udp' ? { datagramSize: LOOPBACK_DATAGRAM } : {}),
      verifyHash,
    });
    return xferRun(ctx, round, v, r);
  } catch (err) {
    if (isShuttingDown()) throw err; // interrupted: no more runs
    return { round, variant: v, error: errorText(err) } as LoopRun;
  } finally {
    await stopAll(); // whatever this run left (nothing, when it went well)
  }
}

interface RoundRatios {
  udpVsBlast: number | null;
  udpWallVsBlast: number | null;
  udpVsTcp: number | null;
  udpVsTcpWall: number | null;
}

function roundRatios(runs: LoopRun[]): RoundRatios {
  const blast = runs.find((r): r is BlastRun => r.variant === 'blast' && !r.error);
  const udp = runs.find((r): r is XferRun => r.variant === 'udp' && !r.error);
  const tcp = runs.find((r): r is XferRun => r.variant === 'tcp' && !r.error);
  const div = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null);
  return {
    udpVsBlast: div(udp?.transferMBps, blast?.receivedMBps),
    udpWallVsBlast: div(udp?.wallMBps, blast?.receivedMBps),
    udpVsTcp: div(udp?.transferMBps, tcp?.transferMBps),
    udpVsTcpWall: div(udp?.wallMBps, tcp?.wallMBps),
  };
}

const passFail = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'PASS' : 'FAIL');

function printStats(prefix: string, s: unknown): void {
  const st = s as Record<string, number | null | undefined> | undefined;
  if (!st || st.packetsSent === undefined) return;
  const io = (s as { io?: string }).io;
  console.log(
    `    ${prefix}: ${st.packetsSent} packets sent, ${st.retransmitted ?? 0} retransmitted (${formatBytes(st.retransmittedBytes ?? 0)}), ${st.lost ?? 0} declared lost, ${st.spurious ?? 0} spurious, ` +
      `srtt ${f2(st.srttMs)} ms (min ${f2(st.minRttMs)}), rate at the end ${f1(((st.rateBytesPerSecond ?? NaN) * 8) / 1e6)} Mbit/s` +
      (io ? `, io ${io}` : ''),
  );
}

function printLoopRound(runs: LoopRun[], round: number, rounds: number, order: LoopVariant[]): void {
  console.log(`\nudp loopback round ${round + 1} of ${rounds} (order: ${order.map((v) => LOOP_LABEL[v]).join(', ')})`);
  const w = [20, 11, 11, 12, 12, 11, 12];
  console.log(row(['variant', 'transfer s', 'MB/s xfer', 'wall s', 'MB/s wall', 'sender RSS', 'receiver RSS'], w));
  for (const v of ['blast', 'udp', 'tcp'] as const) {
    const r = runs.find((x) => x.variant === v);
    if (!r) continue;
    if (r.error) {
      console.log(row([LOOP_LABEL[v], 'FAILED', '', '', '', '', ''], w));
      console.log(`    ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
      continue;
    }
    if (r.variant === 'blast') {
      const rec = r.received!;
      const snt = r.sent!;
      console.log(row([LOOP_LABEL.blast, f3(rec.seconds as number), f1(r.receivedMBps), '-', '-', '-', '-'], w));
      console.log(
        `    sent ${snt.datagrams} datagrams (${f1((snt.bytes as number) / 1e6)} MB) at ${f1(r.sentMBps)} MB/s; received ${rec.datagrams} (${pct(r.deliveredFraction, 1)} delivered), ` +
          `${f1(r.receivedMBps)} MB/s first to last datagram; SO_RCVBUF ${formatBytes(r.rcvbuf ?? 0)}`,
      );
    } else {
      console.log(
        row([LOOP_LABEL[v], f3(r.transferSeconds), f1(r.transferMBps), f3(r.wallSeconds), f1(r.wallMBps), `${f1(rssMB(r.senderPeakRssKiB))} MB`, `${f1(rssMB(r.receiverPeakRssKiB))} MB`], w),
      );
      if (v === 'udp') printStats('udp sender', r.senderStats);
    }
  }
  const q = roundRatios(runs);
  console.log(
    `  ratios: udp/blast ${f2(q.udpVsBlast)} (transfer rate / blast received rate; bar >= ${UDP_VS_BLAST_BAR}: ${passFail(q.udpVsBlast === null ? null : q.udpVsBlast >= UDP_VS_BLAST_BAR)}), ` +
      `udp/tcp ${f2(q.udpVsTcp)} (transfer), ${f2(q.udpVsTcpWall)} (wall)`,
  );
  const checks = runs.filter((r): r is XferRun => r.variant !== 'blast' && !r.error).map((r) => `${LOOP_LABEL[r.variant]}: ${VERIFIED_TEXT[r.verified!]}`);
  if (checks.length) console.log(`  output check: ${checks.join('; ')}`);
}

function loopSummary(runs: LoopRun[], rounds: number) {
  const ok = <T extends LoopRun>(v: LoopVariant) => runs.filter((r) => r.variant === v && !r.error) as T[];
  const blast = ok<BlastRun>('blast');
  const udp = ok<XferRun>('udp');
  const tcp = ok<XferRun>('tcp');
  const perRound = Array.from({ length: rounds }, (_, k) => roundRatios(runs.filter((r) => r.round === k)));
  const med = (xs: Array<number | null | undefined>) => median(xs.filter((x): x is number => typeof x === 'number'));
  const udpVsBlast = med(perRound.map((q) => q.udpVsBlast));
  const maxRss = (xs: XferRun[], key: 'senderPeakRssKiB' | 'receiverPeakRssKiB') => {
    const v = xs.map((r) => r[key]).filter((x): x is number => typeof x === 'number');
    return v.length ? rssMB(Math.max(...v)) : null;
  };
  return {
    failedRuns: runs.filter((r) => r.error).length,
    blast: {
      medianReceivedMBps: med(blast.map((r) => r.receivedMBps)),
      medianSentMBps: med(blast.map((r) => r.sentMBps)),
      medianDeliveredFraction: med(blast.map((r) => r.deliveredFraction)),
    },
    udp: {
      medianTransferMBps: med(udp.map((r) => r.transferMBps)),
      medianWallMBps: med(udp.map((r) => r.wallMBps)),
      maxSenderPeakRssMB: maxRss(udp, 'senderPeakRssKiB'),
      maxReceiverPeakRssMB: maxRss(udp, 'receiverPeakRssKiB'),
      medianRetransmitted: med(udp.map((r) => (r.senderStats as { retransmitted?: number } | undefined)?.retransmitted)),
    },
    tcp: {
      medianTransferMBps: med(tcp.map((r) => r.transferMBps)),
      medianWallMBps: med(tcp.map((r) => r.wallMBps)),
      maxSenderPeakRssMB: maxRss(tcp, 'senderPeakRssKiB'),
      maxReceiverPeakRssMB: maxRss(tcp, 'receiverPeakRssKiB'),
    },
    perRoundRatios: perRound,
    medianUdpVsBlast: udpVsBlast,
    medianUdpWallVsBlast: med(perRound.map((q) => q.udpWallVsBlast)),
    medianUdpVsTcp: med(perRound.map((q) => q.udpVsTcp)),
    medianUdpVsTcpWall: med(perRound.map((q) => q.udpVsTcpWall)),
    bar: { name: `sockxfer udp >= ${UDP_VS_BLAST_BAR} x raw blast (median of per-round transfer-rate ratios)`, limit: UDP_VS_BLAST_BAR, value: udpVsBlast, pass: udpVsBlast !== null && udpVsBlast >= UDP_VS_BLAST_BAR },
  };
}

/** The section's heading (printed before its source file is made). */
export function loopbackHeader(size: number, rounds: number): void {
  console.log(
    `\n== udp loopback: ${formatBytes(size)} over 127.0.0.1, ${rounds} round(s): raw Node datagram blast (${LOOPBACK_DATAGRAM}-byte datagrams, ` +
      `${Math.ceil(size / LOOPBACK_DATAGRAM)} of them), sockxfer --udp --datagram-size ${LOOPBACK_DATAGRAM}, sockxfer tcp; xxh128; MB = 1e6 bytes`,
  );
}

export async function runLoopback(ctx: Context, rounds: number): Promise<LoopbackResult> {
  const all: LoopRun[] = [];
  for (let k = 0; k < rounds; k++) {
    const forward: LoopVariant[] = ['blast', 'udp', 'tcp'];
    const order = k % 2 === 0 ? forward : [...forward].reverse();
    const runs: LoopRun[] = [];
    for (const v of order) runs.push(await runLoopVariant(ctx, k, v, k === 0));
    printLoopRound(runs, k, rounds, order);
    all.push(...runs);
  }
  const s = loopSummary(all, rounds);
  console.log(`\nudp loopback summary: ${formatBytes(ctx.size)}, ${rounds} round(s), medians; ratios = medians of the per-round ratios${s.failedRuns ? `; ${s.failedRuns} run(s) FAILED (left out)` : ''}`);
  const w = [20, 11, 11, 14, 14];
  console.log(row(['variant', 'MB/s xfer', 'MB/s wall', 'sender RSS', 'receiver RSS'], w));
  console.log(row([LOOP_LABEL.blast, f1(s.blast.medianReceivedMBps), '-', '-', '-'], w));
  console.log(row([LOOP_LABEL.udp, f1(s.udp.medianTransferMBps), f1(s.udp.medianWallMBps), `${f1(s.udp.maxSenderPeakRssMB)} MB`, `${f1(s.udp.maxReceiverPeakRssMB)} MB`], w));
  console.log(row([LOOP_LABEL.tcp, f1(s.tcp.medianTransferMBps), f1(s.tcp.medianWallMBps), `${f1(s.tcp.maxSenderPeakRssMB)} MB`, `${f1(s.tcp.maxReceiverPeakRssMB)} MB`], w));
  console.log(`  blast: sent at ${f1(s.blast.medianSentMBps)} MB/s, ${pct(s.blast.medianDeliveredFraction, 1)} of the datagrams delivered (medians)`);
  console.log(`  udp/blast: ${f2(s.medianUdpVsBlast)} (transfer rate), ${f2(s.medianUdpWallVsBlast)} (wall rate)`);
  console.log(`  udp/tcp:   ${f2(s.medianUdpVsTcp)} (transfer rate), ${f2(s.medianUdpVsTcpWall)} (wall rate)`);
  console.log(`  BAR sockxfer udp >= ${UDP_VS_BLAST_BAR} x blast: ${f2(s.medianUdpVsBlast)} -> ${passFail(s.medianUdpVsBlast === null ? null : s.bar.pass)}`);
  console.log('  blast: received bytes / time from the first datagram to the last, at the receiver process (no start-up, no disk, no reliability).');
  console.log("  MB/s xfer: file bytes / the sender's done-event seconds; MB/s wall: file bytes / (sender spawn until both processes exited).");
  return { size: ctx.size, rounds, datagramSize: LOOPBACK_DATAGRAM, sourceSha256: ctx.srcSha256, runs: all, summary: s };
}

// ---------------------------------------------------------------------------------------------
// Through the impairment relay: 100 Mbit/s, 50 ms RTT, random loss

export const RELAY_RATE_BPS = 100e6;
export const RELAY_RTT_MS = 50;
/** One bandwidth-delay product: 100 Mbit/s x 50 ms = 625,000 bytes. */
export const RELAY_QUEUE_BYTES = Math.round((RELAY_RATE_BPS / 8) * (RELAY_RTT_MS / 1000));
/** The issue's bars. */
export const RELAY_BARS = { cleanMbps: 90, lossPercent: 2, lossMbps: 85, retransmitPerLoss: 1.5 };

export interface RelayRun {
  lossPercent: number;
  forward: string;
  backward: string;
  seed: number;
  datagramSize: number | 'ethernet';
  error?: string;
  wallSeconds?: number;
  transferSeconds?: number;
  /** File bytes x 8 / transfer seconds, Mbit/s. */
  goodputMbps?: number;
  /** goodputMbps / 100. */
  goodputOfLink?: number;
  retransmittedBytes?: number;
  /** retransmittedBytes / file bytes. */
  retransmittedOfFile?: number;
  /** retransmittedOfFile / loss rate (loss > 0 only). */
  retransmittedPerLoss?: number | null;
  /** Informational: the receiver's rate between 10% and 90% of the file (progress events), Mbit/s. */
  steadyMbps?: number | null;
  senderStats?: unknown;
  receiverStats?: unknown;
  senderPeakRssKiB?: number | null;
  receiverPeakRssKiB?: number | null;
  verified?: Verified;
  /** The relay's own counters (its stats line), or null if it gave none. */
  relay: { forward: Record<string, number>; backward: Record<string, number>; clients: number } | null;
  bars: Bar[];
}

export interface Bar {
  name: string;
  value: number | null;
  limit: number;
  /** 'min': value >= limit passes; 'max': value <= limit passes. */
  kind: 'min' | 'max';
  pass: boolean;
}

export interface RelayResult {
  size: number;
  lossesPercent: number[];
  seed: number;
  datagramSize: number | 'ethernet';
  rateBitsPerSecond: number;
  rttMs: number;
  queueBytes: number;
  sourceSha256: string;
  runs: RelayRun[];
  bars: Bar[];
}

function specs(lossPercent: number): { forward: string; backward: string } {
  const p = String(Number((lossPercent / 100).toFixed(6)));
  const oneWay = RELAY_RTT_MS / 2;
  return {
    forward: `rate=${RELAY_RATE_BPS / 1e6}M,delay=${oneWay},queue=${RELAY_QUEUE_BYTES},loss=${p}`,
    backward: `delay=${oneWay},loss=${p}`,
  };
}

/** SIGTERM, then its stats line (bounded). */
async function stopRelay(relay: Proc): Promise<RelayRun['relay']> {
  if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill('SIGTERM');
  try {
    await waitExit(relay, 5000);
  } catch {
    return null; // killed after 5 s: no stats
  }
  await stdoutClosed(relay);
  const stats = relay.events.find((e) => e.event === 'stats');
  return stats ? (stats as unknown as RelayRun['relay']) : null;
}

function barsFor(run: RelayRun): Bar[] {
  const bars: Bar[] = [];
  const g = run.error ? null : (run.goodputMbps ?? null);
  const fail = (b: Omit<Bar, 'pass'>): Bar => ({ ...b, pass: b.value !== null && (b.kind === 'min' ? b.value >= b.limit : b.value <= b.limit) });
  if (run.lossPercent === 0) bars.push(fail({ name: 'clean path: goodput >= 90 Mbit/s', value: g, limit: RELAY_BARS.cleanMbps, kind: 'min' }));
  if (run.lossPercent === RELAY_BARS.lossPercent) {
    bars.push(fail({ name: `${RELAY_BARS.lossPercent}% loss: goodput >= ${RELAY_BARS.lossMbps} Mbit/s`, value: g, limit: RELAY_BARS.lossMbps, kind: 'min' }));
    const limit = (RELAY_BARS.retransmitPerLoss * RELAY_BARS.lossPercent) / 100;
    bars.push(
      fail({
        name: `${RELAY_BARS.lossPercent}% loss: retransmitted bytes <= ${RELAY_BARS.retransmitPerLoss} x loss = ${pct(limit, 1)} of the file`,
        value: run.error ? null : (run.retransmittedOfFile ?? null),
        limit,
        kind: 'max',
      }),
    );
  }
  return bars;
}

async function runRelayOnce(ctx: Context, lossPercent: number, seed: number, datagramSize: number | 'ethernet'): Promise<RelayRun> {
  const { forward, backward } = specs(lossPercent);
  const run: RelayRun = { lossPercent, forward, backward, seed, datagramSize, relay: null, bars: [] };
  const holder: { relay?: Proc } = {};
  try {
    const r = await runXfer(ctx, {
      label: `sockxfer udp via relay (loss ${lossPercent}%)`,
      hash: 'xxh128',
      transport: 'udp',
      datagramSize,
      verifyHash: true,
      via: async (receiverPort) => {
        holder.relay = start(
          'relay-process',
          process.execPath,
          [RELAY, '--host', '127.0.0.1', '--port', '0', '--target', `127.0.0.1:${receiverPort}`, '--seed', String(seed), '--forward', forward, '--backward', backward],
          ['pipe', 'pipe', 'pipe'], // stdin: the relay ends if the bench goes away
        );
        const l = await holder.relay.waitFor((e) => e.event === 'listening', 15_000);
        if (l.host !== '127.0.0.1') throw new Error(`relay-process listens on ${String(l.host)}, expected 127.0.0.1`);
        return l.port as number;
      },
    });
    const st = (r.sent.stats ?? {}) as Record<string, number | undefined>;
    run.wallSeconds = r.wallSeconds;
    run.transferSeconds = r.transferSeconds;
    run.goodputMbps = (ctx.size * 8) / r.transferSeconds / 1e6;
    run.goodputOfLink = (run.goodputMbps * 1e6) / RELAY_RATE_BPS;
    run.retransmittedBytes = st.retransmittedBytes ?? NaN;
    run.retransmittedOfFile = run.retransmittedBytes / ctx.size;
    run.retransmittedPerLoss = lossPercent > 0 ? run.retransmittedOfFile / (lossPercent / 100) : null;
    run.steadyMbps = r.steadyBytesPerSecond === null ? null : (r.steadyBytesPerSecond * 8) / 1e6;
    run.senderStats = r.sent.stats;
    run.receiverStats = r.received.stats;
    run.senderPeakRssKiB = r.senderPeakRssKiB;
    run.receiverPeakRssKiB = r.receiverPeakRssKiB;
    run.verified = r.verified;
  } catch (err) {
    if (isShuttingDown()) throw err; // interrupted: no more runs (the signal handler stops everything)
    run.error = errorText(err);
  } finally {
    if (holder.relay && !isShuttingDown()) run.relay = await stopRelay(holder.relay);
    await stopAll();
  }
  run.bars = barsFor(run);
  return run;
}

const RELAY_W = [5, 8, 7, 8, 7, 7, 10, 9, 9, 6, 8, 7, 18, 10];

function printRelayRun(r: RelayRun): void {
  const fwd = r.relay?.forward;
  const bwd = r.relay?.backward;
  const relayFwd = fwd ? `${fwd.droppedLoss}+${fwd.droppedQueue} of ${fwd.received}` : 'n/a';
  const relayBwd = bwd ? `${bwd.droppedLoss} of ${bwd.received}` : 'n/a';
  if (r.error) {
    console.log(row([`${r.lossPercent}%`, 'FAILED', '', '', '', '', '', '', '', '', '', '', relayFwd, relayBwd], RELAY_W));
    console.log(`    ${r.error.split('\n').slice(0, 6).join('\n    ')}`);
  } else {
    const st = (r.senderStats ?? {}) as Record<string, number | null | undefined>;
    console.log(
      row(
        [
          `${r.lossPercent}%`,
          f1(r.goodputMbps),
          pct(r.goodputOfLink, 0),
          f1(r.steadyMbps),
          f2(r.transferSeconds),
          f2(r.wallSeconds),
          formatBytes(r.retransmittedBytes ?? 0),
          pct(r.retransmittedOfFile),
          r.retransmittedPerLoss === null ? '-' : f2(r.retransmittedPerLoss),
          f0(st.lost),
          f0(st.spurious),
          f1(st.srttMs),
          relayFwd,
          relayBwd,
        ],
        RELAY_W,
      ),
    );
  }
  for (const b of r.bars) console.log(`      BAR ${b.name}: ${b.kind === 'max' ? pct(b.value) : f1(b.value)} -> ${b.pass ? 'PASS' : 'FAIL'}`);
}

/** The section's heading (printed before its source file is made). */
export function relayHeader(size: number, lossesPercent: number[], seed: number, datagramSize: number | 'ethernet'): void {
  const ex = specs(2);
  console.log(
    `\n== relay: ${formatBytes(size)} file to file, sockxfer send --udp --datagram-size ${datagramSize} (xxh128) through bench/relay-process on 127.0.0.1, ` +
      `one run per loss rate (${lossesPercent.map((p) => `${p}%`).join(', ')}), relay seed ${seed}`,
  );
  console.log(`  forward (data), e.g. at 2%: ${ex.forward}  = ${RELAY_RATE_BPS / 1e6} Mbit/s of UDP payload, ${RELAY_RTT_MS / 2} ms, tail-drop queue of one BDP`);
  console.log(`  backward (acks), e.g. at 2%: ${ex.backward}  (RTT ${RELAY_RTT_MS} ms; the same random loss rate on both directions)`);
}

export async function runRelay(ctx: Context, lossesPercent: number[], seed: number, datagramSize: number | 'ethernet'): Promise<RelayResult> {
  console.log(row(['loss', 'Mbit/s', 'of link', 'steady', 'xfer s', 'wall s', 'retx bytes', 'retx/file', 'retx/loss', 'lost', 'spurious', 'srtt ms', 'relay fwd drop', 'relay bwd'], RELAY_W));
  const runs: RelayRun[] = [];
  for (const loss of lossesPercent) {
    const r = await runRelayOnce(ctx, loss, seed, datagramSize);
    printRelayRun(r);
    runs.push(r);
  }
  const bars = runs.flatMap((r) => r.bars);
  console.log('  Mbit/s = goodput: file bytes x 8 / the sender\'s done-event seconds (1 Mbit = 1e6 bits); "of link" = goodput / 100 Mbit/s (the relay counts UDP payload, not IP/UDP headers).');
  console.log('  steady: Mbit/s between 10% and 90% of the file at the receiver (its progress events; informational, no bar): without handshake, ramp-up, final hash and commit.');
  console.log('  retx bytes: stats.retransmittedBytes of the sender; retx/loss: (retx bytes / file) / loss rate; lost, spurious: packets the sender declared lost / found delivered after all.');
  console.log('  relay fwd drop: random-loss drops + queue drops of all datagrams the relay received from the sender; relay bwd: loss drops of the receiver\'s datagrams.');
  const have = (p: number) => lossesPercent.includes(p);
  if (!have(0)) console.log('  BAR clean path >= 90 Mbit/s: not measured (0 not in --relay-losses)');
  if (!have(RELAY_BARS.lossPercent)) console.log(`  BAR ${RELAY_BARS.lossPercent}% loss: not measured (${RELAY_BARS.lossPercent} not in --relay-losses)`);
  if (bars.length) console.log(`  bars: ${bars.filter((b) => b.pass).length} of ${bars.length} PASS${bars.some((b) => !b.pass) ? ` (FAIL: ${bars.filter((b) => !b.pass).map((b) => b.name).join('; ')})` : ''}`);
  return {
    size: ctx.size,
    lossesPercent,
    seed,
    datagramSize,
    rateBitsPerSecond: RELAY_RATE_BPS,
    rttMs: RELAY_RTT_MS,
    queueBytes: RELAY_QUEUE_BYTES,
    sourceSha256: ctx.srcSha256,
    runs,
    bars,
  };
}
