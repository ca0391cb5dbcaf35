/**
 * The fuzz loop: builds input I of a target from its own seed, checks it, and counts what
 * happened. Pure but for the clock and the heap gauge, both passed in (with Node's as defaults).
 *
 * A target's `check` says whether an input was accepted or rejected in the documented way;
 * anything else is a finding: a verdict of kind 'finding', any exception escaping `check`,
 * an input slower than `slowMs` (three times in a row, so a GC pause is not a finding), or the
 * heap growing past `heapLimitBytes`.
 */
import { inputSeed, Rng } from './random.js';

/** One input, and how a target feeds it to its parser. */
export interface FuzzInput {
  bytes: Buffer;
  /** How it was made, for the report: "valid offer", "mutated ack (flip,fix-crc)", … */
  origin: string;
  /** Deframer: the lengths of the pushes, in order (they sum to bytes.length). */
  pieces?: number[];
  /** Codec and deframer: the DATA limit given to the decoder. */
  maxData?: number;
  /** The bytes are handed over as a view starting this many bytes into a larger buffer. */
  offset?: number;
}

export type Verdict =
  | { kind: 'accepted'; reason: string }
  | { kind: 'rejected'; reason: string }
  | { kind: 'finding'; message: string };

export interface FuzzTarget {
  readonly name: string;
  generate(rng: Rng): FuzzInput;
  /** Feeds the input to the parser and judges the result; may throw (a throw is a finding). */
  check(input: FuzzInput): Verdict;
}

export interface Finding {
  target: string;
  seed: number;
  /** The input's index; -1 for a finding about the whole run (heap growth). */
  index: number;
  message: string;
  input?: FuzzInput;
}

export interface TargetReport {
  target: string;
  seed: number;
  /** Inputs checked. */
  inputs: number;
  /** Inputs asked for; more than `inputs` when the time bound stopped the run. */
  planned: number;
  accepted: Map<string, number>;
  rejected: Map<string, number>;
  findingCount: number;
  /** The first `maxFindings` findings, in order. */
  findings: Finding[];
  elapsedMs: number;
  peakHeapBytes: number;
  peakRssBytes: number;
  /** True when the deadline stopped the run before `planned` inputs. */
  stoppedByDeadline: boolean;
  slowestMs: number;
}

export interface FuzzOptions {
  seed: number;
  inputs: number;
  /** Stop (cleanly) once `clock()` passes this. */
  deadline?: number;
  /** An input slower than this (ms) is a finding. */
  slowMs?: number;
  /** heapUsed above this is a finding. */
  heapLimitBytes?: number;
  /** Heap sampling period, in inputs. */
  sampleEvery?: number;
  maxFindings?: number;
  /** Called every `sampleEvery` inputs and at the end. */
  onProgress?: (report: TargetReport) => void;
  /** Called before each input with its index (a watchdog reads it). */
  onInput?: (index: number) => void;
  clock?: () => number;
  memory?: () => { heapUsed: number; rss: number };
}

export const DEFAULT_SLOW_MS = 50;
export const DEFAULT_HEAP_LIMIT = 256 * 1024 * 1024;
const DEFAULT_SAMPLE_EVERY = 10_000;
const DEFAULT_MAX_FINDINGS = 20;
/** Retries of a slow input before it counts: the fastest of three runs must be slow. */
const SLOW_RUNS = 3;

/** Input `index` of `target` in a run seeded with `seed`: the same bytes every time. */
export function inputAt(target: FuzzTarget, seed: number, index: number): FuzzInput {
  return target.generate(new Rng(inputSeed(seed, target.name, index)));
}

function describeThrown(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const stack = err.stack?.split('\n').slice(1, 4).map((l) => l.trim()).join(' | ');
    return `threw ${err.name}${code === undefined ? '' : ` ${String(code)}`}: ${err.message}${stack ? ` (${stack})` : ''}`;
  }
  return `threw a non-Error: ${String(err)}`;
}

/** Runs `check`, turning an escaped exception into a finding. */
export function judge(target: FuzzTarget, input: FuzzInput): Verdict {
  try {
    return target.check(input);
  } catch (err) {
    return { kind: 'finding', message: describeThrown(err) };
  }
}

const nodeClock = (): number => performance.now();
const nodeMemory = (): { heapUsed: number; rss: number } => {
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, rss: m.rss };
};

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

/** Checks inputs 0..inputs-1 of `target` (fewer if the deadline comes first). */
export function runTarget(target: FuzzTarget, options: FuzzOptions): TargetReport {
  const clock = options.clock ?? nodeClock;
  const memory = options.memory ?? nodeMemory;
  const slowMs = options.slowMs ?? DEFAULT_SLOW_MS;
  const heapLimit = options.heapLimitBytes ?? DEFAULT_HEAP_LIMIT;
  const sampleEvery = options.sampleEvery ?? DEFAULT_SAMPLE_EVERY;
  const maxFindings = options.maxFindings ?? DEFAULT_MAX_FINDINGS;
  const start = clock();
  const report: TargetReport = {
    target: target.name,
    seed: options.seed,
    inputs: 0,
    planned: options.inputs,
    accepted: new Map(),
    rejected: new Map(),
    findingCount: 0,
    findings: [],
    elapsedMs: 0,
    peakHeapBytes: 0,
    peakRssBytes: 0,
    stoppedByDeadline: false,
    slowestMs: 0,
  };
  const addFinding = (finding: Finding): void => {
    report.findingCount++;
    if (report.findings.length < maxFindings) report.findings.push(finding);
  };
  let heapReported = false;
  const sample = (index: number): void => {
    const m = memory();
    report.peakHeapBytes = Math.max(report.peakHeapBytes, m.heapUsed);
    report.peakRssBytes = Math.max(report.peakRssBytes, m.rss);
    if (m.heapUsed > heapLimit && !heapReported) {
      heapReported = true;
      addFinding({
        target: target.name,
        seed: options.seed,
        index: -1,
        message: `heap grew to ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB (limit ${(heapLimit / 2 ** 20).toFixed(0)} MiB) by input ${index}`,
      });
    }
    report.elapsedMs = clock() - start;
  };

  sample(0);
  for (let i = 0; i < options.inputs; i++) {
    if (options.deadline !== undefined && (i & 63) === 0 && clock() > options.deadline) {
      report.stoppedByDeadline = true;
      break;
    }
    options.onInput?.(i);
    const input = inputAt(target, options.seed, i);
    let t0 = clock();
    let verdict = judge(target, input);
    let ms = clock() - t0;
    for (let run = 1; run < SLOW_RUNS && ms > slowMs; run++) {
      t0 = clock();
      verdict = judge(target, input);
      ms = Math.min(ms, clock() - t0);
    }
    report.slowestMs = Math.max(report.slowestMs, ms);
    report.inputs++;
    if (verdict.kind === 'finding') {
      addFinding({ target: target.name, seed: options.seed, index: i, message: verdict.message, input });
    } else if (ms > slowMs) {
      addFinding({ target: target.name, seed: options.seed, index: i, message: `took ${ms.toFixed(1)} ms (the fastest of ${SLOW_RUNS} runs; limit ${slowMs} ms)`, input });
    } else {
      bump(verdict.kind === 'accepted' ? report.accepted : report.rejected, verdict.reason);
    }
    if ((i + 1) % sampleEvery === 0) {
      sample(i + 1);
      options.onProgress?.(report);
    }
  }
  sample(report.inputs);
  options.onProgress?.(report);
  return report;
}

/** Rebuilds input `index` and checks it once: what `--index` prints. */
export function replay(target: FuzzTarget, seed: number, index: number, clock: () => number = nodeClock): { input: FuzzInput; verdict: Verdict; ms: number } {
  const input = inputAt(target, seed, index);
  const t0 = clock();
  const verdict = judge(target, input);
  return { input, verdict, ms: clock() - t0 };
}

/** Sum of a count map. */
export function total(map: Map<string, number>): number {
  let n = 0;
  for (const v of map.values()) n += v;
  return n;
}

/** The bytes of an input as a hex string, cut after `maxBytes` (with a note saying how many were left out). */
export function inputHex(input: FuzzInput, maxBytes = 64 * 1024): string {
  const shown = input.bytes.subarray(0, maxBytes).toString('hex');
  return input.bytes.length > maxBytes ? `${shown}… (${input.bytes.length - maxBytes} more bytes; replay with --index to see them)` : shown;
}

/** A finding as text: where it came from, how to replay it, and the input. */
export function formatFinding(f: Finding): string {
  const lines = [`FINDING ${f.target} seed=${f.seed} index=${f.index}: ${f.message}`];
  if (f.index >= 0) lines.push(`  replay: npm run fuzz -- --seed ${f.seed} --target ${f.target} --index ${f.index}`);
  if (f.input) {
    lines.push(`  origin: ${f.input.origin}`);
    if (f.input.maxData !== undefined) lines.push(`  maxData: ${f.input.maxData}`);
    if (f.input.offset !== undefined) lines.push(`  offset: ${f.input.offset}`);
    if (f.input.pieces !== undefined) lines.push(`  pieces: ${f.input.pieces.length <= 200 ? f.input.pieces.join(',') : `${f.input.pieces.slice(0, 200).join(',')},… (${f.input.pieces.length} in all)`}`);
    lines.push(`  input (${f.input.bytes.length} bytes): ${inputHex(f.input)}`);
  }
  return lines.join('\n');
}
