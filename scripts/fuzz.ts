/**
 * `npm run fuzz`: seeded fuzzing of the three parsers that read bytes from the network (the
 * frame decoder, the TCP stream deframer, the UDP packet parser). See src/fuzz for what is
 * generated and what counts as a finding.
 *
 *   npm run fuzz -- [--inputs N] [--seed S] [--target codec|deframer|packet|all] [--max-seconds T]
 *   npm run fuzz -- --seed S --target T --index I      replays input I of target T, printing it
 *
 * Exit status: 0 no findings, 1 findings (each printed with its replay command), 2 bad arguments.
 *
 * The fuzzing runs in a worker thread; this thread watches a heartbeat the worker bumps before
 * every input. A parser stuck in a loop never returns to the fuzz loop, so only a watchdog
 * outside it can report the input (HANG_SECONDS without progress) and end the run.
 */
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import {
  DEFAULT_SEED,
  TARGETS,
  formatFinding,
  inputAt,
  inputHex,
  replay,
  runTarget,
  total,
  type FuzzTarget,
  type TargetReport,
} from '../src/fuzz/index.js';

const DEFAULT_INPUTS = 1_000_000;
const DEFAULT_MAX_SECONDS = 600;
/** No new input for this long means the parser hangs on the current one. */
const HANG_SECONDS = 30;
const MiB = 2 ** 20;

interface Plan {
  seed: number;
  seedGiven: boolean;
  targets: string[];
  /** Inputs in total, split across the targets. */
  inputs: number;
  index: number | null;
  maxSeconds: number;
}

/** Worker → main thread. */
type Message = { kind: 'line'; text: string } | { kind: 'done'; findings: number };

/** Heartbeat slots in the shared array: which target, which input, and a counter bumped per input. */
const HB_TARGET = 0;
const HB_INDEX = 1;
const HB_BEAT = 2;

const USAGE = `usage: npm run fuzz -- [--inputs N] [--seed S] [--target codec|deframer|packet|all] [--max-seconds T] [--index I]
  --inputs N        inputs in total, split across the targets (default ${DEFAULT_INPUTS})
  --seed S          run seed, an integer 0..4294967295 (default ${DEFAULT_SEED})
  --target T        codec, deframer, packet or all (default all)
  --max-seconds T   stop cleanly after T seconds in all (default ${DEFAULT_MAX_SECONDS})
  --index I         replay input I of the target(s) and print it, instead of fuzzing`;

class UsageError extends Error {}

function integer(name: string, text: string, max: number): number {
  const clean = text.replace(/_/g, '');
  if (!/^\d+$/.test(clean)) throw new UsageError(`--${name} must be a whole number, got "${text}"`);
  const v = Number(clean);
  if (v > max) throw new UsageError(`--${name} must be at most ${max}, got ${text}`);
  return v;
}

/** Parses the command line; throws UsageError on anything it does not understand. */
function parsePlan(argv: string[]): Plan | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        inputs: { type: 'string' },
        seed: { type: 'string' },
        target: { type: 'string' },
        index: { type: 'string' },
        'max-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' '));
  }
  if (values.help) return 'help';
  const target = values.target ?? 'all';
  if (target !== 'all' && !TARGETS.has(target)) throw new UsageError(`--target must be one of ${[...TARGETS.keys()].join(', ')} or all, got "${target}"`);
  const inputs = values.inputs === undefined ? DEFAULT_INPUTS : integer('inputs', values.inputs, 1_000_000_000);
  if (inputs < 1) throw new UsageError('--inputs must be at least 1');
  const maxSeconds = values['max-seconds'] === undefined ? DEFAULT_MAX_SECONDS : Number(values['max-seconds']);
  if (!(Number.isFinite(maxSeconds) && maxSeconds > 0 && maxSeconds <= 86_400)) throw new UsageError(`--max-seconds must be a number of seconds in (0, 86400], got "${values['max-seconds']}"`);
  return {
    seed: values.seed === undefined ? DEFAULT_SEED : integer('seed', values.seed, 0xffffffff),
    seedGiven: values.seed !== undefined,
    targets: target === 'all' ? [...TARGETS.keys()] : [target],
    inputs,
    index: values.index === undefined ? null : integer('index', values.index, 0xffffffff),
    maxSeconds,
  };
}

function targetNamed(name: string): FuzzTarget {
  const t = TARGETS.get(name);
  if (!t) throw new Error(`no target ${name}`);
  return t;
}

function counts(map: Map<string, number>): string {
  return [...map.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
}

function summary(r: TargetReport): string {
  const seconds = r.elapsedMs / 1000;
  return [
    `fuzz ${r.target}: ${r.inputs} inputs in ${seconds.toFixed(1)} s (${Math.round(r.inputs / Math.max(seconds, 1e-3))} inputs/s)${r.stoppedByDeadline ? `, stopped by the time bound before ${r.planned}` : ''}`,
    `  accepted ${total(r.accepted)}: ${counts(r.accepted) || '-'}`,
    `  rejected ${total(r.rejected)}: ${counts(r.rejected) || '-'}`,
    `  findings ${r.findingCount}; peak heap ${(r.peakHeapBytes / MiB).toFixed(1)} MiB, peak rss ${(r.peakRssBytes / MiB).toFixed(1)} MiB; slowest input ${r.slowestMs.toFixed(1)} ms`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// The worker: fuzzes (or replays) and posts lines.

function runWorker(plan: Plan, heartbeat: Int32Array): void {
  const post = (m: Message): void => parentPort!.postMessage(m);
  const line = (text: string): void => post({ kind: 'line', text });
  let findings = 0;

  if (plan.index !== null) {
    for (const name of plan.targets) {
      Atomics.store(heartbeat, HB_TARGET, plan.targets.indexOf(name));
      Atomics.store(heartbeat, HB_INDEX, plan.index);
      const { input, verdict, ms } = replay(targetNamed(name), plan.seed, plan.index);
      line(`fuzz ${name}: seed ${plan.seed}, input ${plan.index}: ${input.origin}`);
      if (input.maxData !== undefined) line(`  maxData: ${input.maxData}`);
      if (input.offset !== undefined) line(`  offset: ${input.offset}`);
      if (input.pieces !== undefined) line(`  pieces: ${input.pieces.join(',')}`);
      line(`  input (${input.bytes.length} bytes): ${inputHex(input, Infinity)}`);
      if (verdict.kind === 'finding') {
        findings++;
        line(`  FINDING: ${verdict.message} (${ms.toFixed(1)} ms)`);
      } else {
        line(`  ${verdict.kind}: ${verdict.reason} (${ms.toFixed(1)} ms)`);
      }
    }
    post({ kind: 'done', findings });
    return;
  }

  const start = performance.now();
  const budgetEnd = start + plan.maxSeconds * 1000;
  line(`fuzz: seed ${plan.seed}${plan.seedGiven ? '' : ' (the default; change it with --seed)'}, ${plan.inputs} inputs over ${plan.targets.join(', ')}, at most ${plan.maxSeconds} s`);
  for (const [k, name] of plan.targets.entries()) {
    const share = Math.floor(plan.inputs / plan.targets.length) + (k < plan.inputs % plan.targets.length ? 1 : 0);
    // Each target gets an even share of the time left, so a slow one cannot starve the rest.
    const now = performance.now();
    const deadline = now + (budgetEnd - now) / (plan.targets.length - k);
    Atomics.store(heartbeat, HB_TARGET, k);
    let quarter = 1;
    const report = runTarget(targetNamed(name), {
      seed: plan.seed,
      inputs: share,
      deadline,
      onInput: (i) => {
        Atomics.store(heartbeat, HB_INDEX, i);
        Atomics.add(heartbeat, HB_BEAT, 1);
      },
      onProgress: (r) => {
        if (quarter < 4 && r.inputs >= (share * quarter) / 4) {
          const seconds = r.elapsedMs / 1000;
          line(`fuzz ${name}: ${r.inputs}/${share} inputs, ${seconds.toFixed(1)} s, ${Math.round(r.inputs / Math.max(seconds, 1e-3))} inputs/s, ${r.findingCount} findings, heap ${(r.peakHeapBytes / MiB).toFixed(1)} MiB`);
          while (quarter < 4 && r.inputs >= (share * quarter) / 4) quarter++;
        }
      },
    });
    findings += report.findingCount;
    for (const f of report.findings) line(formatFinding(f));
    if (report.findingCount > report.findings.length) line(`fuzz ${name}: ${report.findingCount - report.findings.length} more findings not shown`);
    line(summary(report));
  }
  line(`fuzz: ${findings === 0 ? 'no findings' : `${findings} findings`} in ${((performance.now() - start) / 1000).toFixed(1)} s`);
  post({ kind: 'done', findings });
}

// ---------------------------------------------------------------------------------------------
// The main thread: arguments, the worker, the watchdog, the exit status.

function runInWorker(plan: Plan): Promise<number> {
  const shared = new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
  const worker = new Worker(new URL(import.meta.url), { workerData: { plan, heartbeat: shared } });
  return new Promise((resolve) => {
    let findings: number | null = null;
    let lastBeat = -1;
    let lastChange = performance.now();
    const hardEnd = performance.now() + (plan.maxSeconds + HANG_SECONDS) * 1000;
    const finish = (status: number): void => {
      clearInterval(watchdog);
      resolve(status);
    };
    let stopping = false;
    const hang = (why: string): void => {
      if (stopping) return;
      stopping = true;
      const name = plan.targets[Atomics.load(shared, HB_TARGET)] ?? plan.targets[0]!;
      const index = Atomics.load(shared, HB_INDEX);
      const input = inputAt(targetNamed(name), plan.seed, index);
      process.stdout.write(`${formatFinding({ target: name, seed: plan.seed, index, message: why, input })}\n`);
      findings = (findings ?? 0) + 1;
      void worker.terminate();
    };
    const watchdog = setInterval(() => {
      const beat = Atomics.load(shared, HB_BEAT);
      const now = performance.now();
      if (beat !== lastBeat) {
        lastBeat = beat;
        lastChange = now;
      } else if (now - lastChange > HANG_SECONDS * 1000) {
        hang(`no progress for ${HANG_SECONDS} s: the parser hangs on this input`);
      }
      if (now > hardEnd) hang(`the run overran --max-seconds by ${HANG_SECONDS} s`);
    }, 1000);
    worker.on('message', (m: Message) => {
      if (m.kind === 'line') process.stdout.write(`${m.text}\n`);
      else findings = m.findings;
    });
    worker.on('error', (err) => {
      process.stderr.write(`fuzz: the fuzzer itself failed: ${err.stack ?? String(err)}\n`);
      findings = Math.max(findings ?? 0, 1);
    });
    worker.on('exit', () => finish(findings === null ? 1 : findings > 0 ? 1 : 0));
  });
}

async function main(argv: string[]): Promise<number> {
  let plan: Plan | 'help';
  try {
    plan = parsePlan(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`fuzz: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (plan === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  return runInWorker(plan);
}

if (isMainThread) {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (err: unknown) => {
      process.stderr.write(`fuzz: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
} else {
  const data = workerData as { plan: Plan; heartbeat: Int32Array };
  runWorker(data.plan, data.heartbeat);
}
