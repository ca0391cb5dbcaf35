/**
 * What the benchmark's sections share: the work context, one timed sockxfer transfer (TCP or
 * UDP, optionally through something between the two ends, such as the impairment relay), output
 * checks, and table formatting.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BIN, NODE_FLAGS, describeExit, readPeakRssKiB, runCommand, sha256File, start, waitExit, type Exit, type JsonEvent, type Proc } from './lib.js';

export interface Context {
  /** Bytes in the source file. */
  size: number;
  work: string;
  src: string;
  srcSha256: string;
  /** Where the receivers write; emptied before every timed run. */
  outDir: string;
  gnuTime: string | null;
  /** Longest a single timed run may take before it is killed. */
  limitMs: number;
}

/** How an output was checked: its SHA-256 read back, or its size (+ the SHA-256 sockxfer reported). */
export type Verified = 'sha256' | 'size' | 'size+reported-sha256';

export const VERIFIED_TEXT: Record<Verified, string> = {
  sha256: 'SHA-256 identical',
  size: 'size identical',
  'size+reported-sha256': 'size identical, reported SHA-256 = source',
};

export function mbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e6;
}

/** Before every timed run: no previous output, dirty pages written back. */
export async function prepare(ctx: Context): Promise<void> {
  for (const name of await fsp.readdir(ctx.outDir)) await fsp.rm(path.join(ctx.outDir, name), { force: true, recursive: true });
  const r = await runCommand('sync', [], 120_000);
  if (r.code !== 0) throw new Error(`sync failed: ${r.stderr.trim()}`);
}

export async function checkOutput(ctx: Context, file: string, what: string, hash: boolean): Promise<'sha256' | 'size'> {
  const st = await fsp.stat(file).catch(() => null);
  if (!st) throw new Error(`${what}: no output file ${file}`);
  if (st.size !== ctx.size) throw new Error(`${what}: output has ${st.size} bytes, the source ${ctx.size}`);
  if (!hash) return 'size';
  const sha = await sha256File(file);
  if (sha !== ctx.srcSha256) throw new Error(`${what}: output SHA-256 ${sha} differs from the source's ${ctx.srcSha256}`);
  return 'sha256';
}

/** sockxfer, wrapped in GNU time (peak RSS) when there is one. */
export function startSockxfer(ctx: Context, name: string, args: string[], rssFile: string): Proc {
  const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
  if (ctx.gnuTime) return start(name, ctx.gnuTime, ['-f', '%M', '-o', rssFile, process.execPath, ...NODE_FLAGS, BIN, ...args], stdio);
  return start(name, process.execPath, [...NODE_FLAGS, BIN, ...args], stdio);
}

/** Waits until the process's stdout closed ('exit' can come before the last lines are read). */
export function stdoutClosed(p: Proc): Promise<unknown> {
  return new Promise((resolve) => (p.child.stdout && !p.child.stdout.closed ? p.child.stdout.once('close', resolve) : resolve(null)));
}

export interface XferOptions {
  /** For messages, e.g. "sockxfer udp". */
  label: string;
  hash: 'xxh128' | 'sha256';
  transport: 'tcp' | 'udp';
  /** UDP only: --datagram-size. */
  datagramSize?: number | 'ethernet';
  /** Read the output back and compare its SHA-256 (else its size only). */
  verifyHash: boolean;
  /**
   * Runs once the receiver listens, before the sender starts; returns the port the sender
   * sends to (e.g. a relay in front of the receiver). Default: the receiver's port.
   */
  via?: (receiverPort: number) => Promise<number>;
  /** Both sides get --key-file this file: authenticated and encrypted. */
  keyFile?: string;
}

export interface XferResult {
  /** From the sender's spawn until both sender and receiver exited (the existing TCP measure). */
  wallSeconds: number;
  /** From the sender's spawn until the sender exited (its start-up included). */
  senderSeconds: number;
  /** The sender's own `seconds` from its done event: the transfer, without process start-up. */
  transferSeconds: number;
  /** The done events of sender and receiver. */
  sent: JsonEvent;
  received: JsonEvent;
  senderPeakRssKiB: number | null;
  receiverPeakRssKiB: number | null;
  verified: Verified;
  /**
   * The receiver's rate between 10% and 90% of the file, bytes/s, from its progress events (as
   * timed when the bench read them; they come at most every 250 ms): the steady state, without
   * the handshake, the ramp-up and the final hash and commit. null with too few events.
   */
  steadyBytesPerSecond: number | null;
}

/** Bytes per second between the progress events nearest above `lo` and below `hi` of `total`. */
export function steadyRate(p: Proc, total: number, lo = 0.1, hi = 0.9): number | null {
  let first = -1;
  let last = -1;
  for (let i = 0; i < p.events.length; i++) {
    const e = p.events[i]!;
    if (e.event !== 'progress' || typeof e.bytes !== 'number') continue;
    if (first < 0 && e.bytes >= lo * total) first = i;
    if (e.bytes <= hi * total) last = i;
  }
  if (first < 0 || last <= first) return null;
  const bytes = (p.events[last]!.bytes as number) - (p.events[first]!.bytes as number);
  const ms = p.eventTimes[last]! - p.eventTimes[first]!;
  return ms >= 500 && bytes > 0 ? (bytes * 1000) / ms : null;
}

/** One timed sockxfer transfer of ctx.src over 127.0.0.1, file to file. Throws if anything fails. */
export async function runXfer(ctx: Context, o: XferOptions): Promise<XferResult> {
  await prepare(ctx);
  const recvRss = path.join(ctx.work, 'rss-receiver');
  const sendRss = path.join(ctx.work, 'rss-sender');
  await fsp.rm(recvRss, { force: true });
  await fsp.rm(sendRss, { force: true });
  const recv = startSockxfer(
    ctx,
    `${o.label} receive`,
    ['receive', '--port', '0', '--host', '127.0.0.1', '--transport', o.transport, '--dir', ctx.outDir, '--once', '--json', ...(o.keyFile ? ['--key-file', o.keyFile] : [])],
    recvRss,
  );
  const listening = await recv.waitFor((e) => e.event === 'listening', 15_000);
  const port = o.via ? await o.via(listening.port as number) : (listening.port as number);
  const sendArgs = ['send', ctx.src, `127.0.0.1:${port}`, '--json', '--hash', o.hash, ...(o.keyFile ? ['--key-file', o.keyFile] : [])];
  if (o.transport === 'udp') sendArgs.push('--udp', ...(o.datagramSize !== undefined ? ['--datagram-size', String(o.datagramSize)] : []));
  const send = startSockxfer(ctx, `${o.label} send`, sendArgs, sendRss);
  // Both bounded by the limit (a process still running then is killed); on failure, say what
  // each side did.
  const settle = (p: Proc) => waitExit(p, ctx.limitMs).then((x) => ({ x, timedOut: false }), () => ({ x: null, timedOut: true }));
  const [ss, sr] = await Promise.all([settle(send), settle(recv)]);
  if (!ss.x || !sr.x || ss.x.code !== 0 || sr.x.code !== 0) {
    const side = (what: string, p: Proc, s: { x: Exit | null; timedOut: boolean }) =>
      `${what}: ${s.x ? `${describeExit(s.x)} after ${((s.x.at - send.started) / 1000).toFixed(1)} s` : `still running after ${ctx.limitMs / 1000} s (killed)`}` +
      `${s.x?.code === 0 ? '' : `; stderr: ${lastLines(p.stderr(), 3)}`}`;
    throw new Error(`${o.label} failed. ${side('sender', send, ss)}. ${side('receiver', recv, sr)}`);
  }
  const xs = ss.x;
  const xr = sr.x;
  const wallSeconds = (Math.max(xs.at, xr.at) - send.started) / 1000;
  const senderSeconds = (xs.at - send.started) / 1000;
  await Promise.all([stdoutClosed(send), stdoutClosed(recv)]);
  const sent = [...send.events].reverse().find((e) => e.event === 'done');
  const got = [...recv.events].reverse().find((e) => e.event === 'done');
  if (!sent || !got) throw new Error(`${o.label}: exit 0 but no done event from the ${sent ? 'receiver' : 'sender'}`);
  if (sent.encrypted !== Boolean(o.keyFile) || got.encrypted !== Boolean(o.keyFile)) throw new Error(`${o.label}: encrypted is ${String(sent.encrypted)}/${String(got.encrypted)}, expected ${Boolean(o.keyFile)}`);
  if (sent.hash !== got.hash || sent.bytes !== ctx.size || got.bytes !== ctx.size) {
    throw new Error(`${o.label}: sender and receiver disagree: ${JSON.stringify(sent)} vs ${JSON.stringify(got)}`);
  }
  if (o.hash === 'sha256' && sent.hash !== ctx.srcSha256) throw new Error(`${o.label}: reported ${String(sent.hash)}, the source is ${ctx.srcSha256}`);
  const checked = await checkOutput(ctx, path.join(ctx.outDir, path.basename(ctx.src)), o.label, o.verifyHash);
  const verified: Verified = checked === 'size' && o.hash === 'sha256' ? 'size+reported-sha256' : checked;
  return {
    wallSeconds,
    senderSeconds,
    transferSeconds: typeof sent.seconds === 'number' ? sent.seconds : NaN,
    sent,
    received: got,
    senderPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(sendRss) : null,
    receiverPeakRssKiB: ctx.gnuTime ? await readPeakRssKiB(recvRss) : null,
    verified,
    steadyBytesPerSecond: steadyRate(recv, ctx.size),
  };
}

// ---------------------------------------------------------------------------------------------
// Printing

const fixed = (digits: number) => (n: number | null | undefined): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits));
export const f0 = fixed(0);
export const f1 = fixed(1);
export const f2 = fixed(2);
export const f3 = fixed(3);
export const pct = (n: number | null | undefined, digits = 2): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : `${(n * 100).toFixed(digits)}%`);
export const rssMB = (kib: number | null | undefined): number | null => (kib === null || kib === undefined ? null : (kib * 1024) / 1e6);

export function row(cells: string[], widths: number[]): string {
  return '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i] ?? 0))).join('  ');
}

/** The last `n` non-empty lines of a text, joined with " | ". */
export function lastLines(text: string, n: number): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length ? lines.slice(-n).join(' | ') : '(empty)';
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
