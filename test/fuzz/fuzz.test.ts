/**
 * The fuzzer, in short: a seeded run of each target finds nothing and sees both accepted and
 * rejected inputs (so the generators cannot decay into only garbage or only valid frames); the
 * engine reports a deliberately broken target with a seed and index that replay the same bytes;
 * the same seed gives the same inputs; slow inputs and heap growth are reported (with a fake
 * clock and heap gauge); and the built script keeps its exit statuses and replays an input.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  codecTarget,
  deframerTarget,
  formatFinding,
  inputAt,
  packetTarget,
  replay,
  runTarget,
  total,
  type FuzzInput,
  type FuzzTarget,
  type TargetReport,
} from '../../src/fuzz/index.js';
import { FRAME_TYPE } from '../../src/protocol/index.js';
import { PACKET_TYPE } from '../../src/transport/udp/packet.js';

const SEED = 0x5eed;
const INPUTS = 20_000;
/** Generous: this test checks the parsers, not the machine's load; slowness has its own test below. */
const SLOW_MS = 1_000;

function run(target: FuzzTarget, inputs = INPUTS, seed = SEED): TargetReport {
  return runTarget(target, { seed, inputs, slowMs: SLOW_MS });
}

function expectNoFindings(report: TargetReport): void {
  expect(report.findingCount, report.findings.map(formatFinding).join('\n\n')).toBe(0);
  expect(report.inputs).toBe(INPUTS);
}

describe(`fuzz: ${INPUTS} inputs per target, seed ${SEED}`, () => {
  it('codec: no findings; every frame type decodes, and every documented error code is seen', () => {
    const report = run(codecTarget);
    expectNoFindings(report);
    expect(total(report.accepted)).toBeGreaterThan(INPUTS / 10);
    expect(total(report.rejected)).toBeGreaterThan(INPUTS / 10);
    expect([...report.accepted.keys()].sort()).toEqual(Object.keys(FRAME_TYPE).sort());
    expect([...report.rejected.keys()].sort()).toEqual(['E_CHECKSUM', 'E_PROTOCOL', 'E_VERSION', 'need more (null)']);
  });

  it('deframer: no findings; streams end cleanly, end mid-frame, and fail with each documented code', () => {
    const report = run(deframerTarget);
    expectNoFindings(report);
    expect(report.accepted.get('clean end') ?? 0).toBeGreaterThan(INPUTS / 10);
    expect(report.accepted.get('partial frame at end') ?? 0).toBeGreaterThan(0);
    expect([...report.rejected.keys()].sort()).toEqual(['E_CHECKSUM', 'E_PROTOCOL', 'E_VERSION']);
  });

  it('packet: no findings; every packet type decodes, and every drop reason is seen', () => {
    const report = run(packetTarget);
    expectNoFindings(report);
    expect(total(report.accepted)).toBeGreaterThan(INPUTS / 10);
    expect([...report.accepted.keys()].sort()).toEqual(Object.keys(PACKET_TYPE).sort());
    expect([...report.rejected.keys()].sort()).toEqual(['crc', 'magic', 'malformed', 'protected', 'short', 'version']);
  });
});

/** Equal inputs: the same bytes, pieces, limit, offset and description. */
function sameInput(a: FuzzInput, b: FuzzInput): boolean {
  return (
    a.bytes.equals(b.bytes) &&
    JSON.stringify([a.pieces, a.maxData, a.offset, a.origin]) === JSON.stringify([b.pieces, b.maxData, b.offset, b.origin])
  );
}

describe('fuzz: reproducible from the seed', () => {
  for (const target of [codecTarget, deframerTarget, packetTarget]) {
    it(`${target.name}: the same seed and index give the same input; another seed, other inputs`, () => {
      let differ = 0;
      for (let i = 0; i < 300; i++) {
        const a = inputAt(target, 42, i);
        expect(sameInput(a, inputAt(target, 42, i)), `input ${i}`).toBe(true);
        if (!sameInput(a, inputAt(target, 43, i))) differ++;
      }
      // A few tiny inputs (empty, a byte) may coincide; nearly all must not.
      expect(differ).toBeGreaterThan(280);
    });

    it(`${target.name}: two runs with the same seed count the same outcomes`, () => {
      const a = run(target, 2_000, 7);
      const b = run(target, 2_000, 7);
      expect([...b.accepted.entries()].sort()).toEqual([...a.accepted.entries()].sort());
      expect([...b.rejected.entries()].sort()).toEqual([...a.rejected.entries()].sort());
    });
  }
});

describe('fuzz: findings', () => {
  /** The real codec target, except that a "parser" bug throws a TypeError on any input holding 0xAB. */
  const broken: FuzzTarget = {
    name: 'broken-codec',
    generate: (rng) => codecTarget.generate(rng),
    check(input) {
      if (input.bytes.includes(0xab)) throw new TypeError('Cannot read properties of undefined (reading 0xab)');
      return codecTarget.check(input);
    },
  };

  it('a target that throws a TypeError is reported with its seed and index, and replaying that index gives the same bytes', () => {
    const report = runTarget(broken, { seed: 99, inputs: 2_000, slowMs: SLOW_MS });
    expect(report.findingCount).toBeGreaterThan(0);
    // Every input holding the byte is a finding, and none other.
    let expected = 0;
    for (let i = 0; i < 2_000; i++) if (inputAt(broken, 99, i).bytes.includes(0xab)) expected++;
    expect(report.findingCount).toBe(expected);

    const first = report.findings[0]!;
    expect(first.target).toBe('broken-codec');
    expect(first.seed).toBe(99);
    expect(first.message).toMatch(/^threw TypeError: Cannot read properties of undefined/);
    expect(first.input!.bytes.includes(0xab)).toBe(true);

    const again = replay(broken, first.seed, first.index);
    expect(again.input.bytes.equals(first.input!.bytes)).toBe(true);
    expect(again.verdict.kind).toBe('finding');

    const text = formatFinding(first);
    expect(text).toContain(`npm run fuzz -- --seed 99 --target broken-codec --index ${first.index}`);
    expect(text).toContain(first.input!.bytes.toString('hex'));
  });

  it('a thrown non-Error and a wrong verdict are findings too', () => {
    const odd: FuzzTarget = {
      name: 'odd',
      generate: (rng) => ({ bytes: Buffer.from([rng.below(3)]), origin: 'one byte' }),
      check(input) {
        if (input.bytes[0] === 0) throw 'a string';
        if (input.bytes[0] === 1) return { kind: 'finding', message: 'decoded what it must refuse' };
        return { kind: 'rejected', reason: 'fine' };
      },
    };
    const report = runTarget(odd, { seed: 1, inputs: 300, maxFindings: 1_000 });
    const messages = new Set(report.findings.map((f) => f.message));
    expect(messages).toEqual(new Set(['threw a non-Error: a string', 'decoded what it must refuse']));
    expect(report.findingCount + (report.rejected.get('fine') ?? 0)).toBe(300);
  });

  it('an input slow on three runs in a row is a finding; one slow run (a GC pause) is not', () => {
    let now = 0;
    const slow: FuzzTarget = {
      name: 'slow',
      generate: (rng) => ({ bytes: rng.bytes(8), origin: 'eight bytes' }),
      check(input) {
        const key = input.bytes.toString('hex');
        // Input 5 is slow every time; input 6 only the first time it runs.
        if (key === always || (key === once && !seen.has(key))) now += 80;
        seen.add(key);
        return { kind: 'accepted', reason: 'ok' };
      },
    };
    const always = inputAt(slow, 1, 5).bytes.toString('hex');
    const once = inputAt(slow, 1, 6).bytes.toString('hex');
    const seen = new Set<string>();
    const report = runTarget(slow, { seed: 1, inputs: 10, slowMs: 50, clock: () => now });
    expect(report.findings.map((f) => [f.index, f.message])).toEqual([[5, 'took 80.0 ms (the fastest of 3 runs; limit 50 ms)']]);
    expect(report.accepted.get('ok')).toBe(9);
  });

  it('heap growth past the limit is reported once, with the input count it was seen at', () => {
    let heap = 10 * 2 ** 20;
    const leaky: FuzzTarget = {
      name: 'leaky',
      generate: () => ({ bytes: Buffer.alloc(1), origin: 'a byte' }),
      check() {
        heap += 2 ** 20;
        return { kind: 'accepted', reason: 'ok' };
      },
    };
    const report = runTarget(leaky, { seed: 1, inputs: 100, sampleEvery: 10, heapLimitBytes: 64 * 2 ** 20, memory: () => ({ heapUsed: heap, rss: heap }) });
    expect(report.findingCount).toBe(1);
    expect(report.findings[0]!.index).toBe(-1);
    expect(report.findings[0]!.message).toMatch(/^heap grew to 70\.0 MiB \(limit 64 MiB\) by input 60$/);
    expect(report.peakHeapBytes).toBe(110 * 2 ** 20);
  });

  it('the deadline stops a run cleanly and says so', () => {
    let now = 0;
    const ticking: FuzzTarget = {
      name: 'ticking',
      generate: () => ({ bytes: Buffer.alloc(1), origin: 'a byte' }),
      check() {
        now += 1;
        return { kind: 'accepted', reason: 'ok' };
      },
    };
    const report = runTarget(ticking, { seed: 1, inputs: 10_000, deadline: 500, clock: () => now });
    expect(report.stoppedByDeadline).toBe(true);
    expect(report.inputs).toBeGreaterThan(400);
    expect(report.inputs).toBeLessThan(600);
    expect(report.findingCount).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The built script (npm run build first, as for the end-to-end tests).

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(ROOT, 'dist/scripts/fuzz.js');

function script(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  if (!fs.existsSync(SCRIPT)) throw new Error(`${SCRIPT} is missing: run npm run build first`);
  const child = spawn(process.execPath, [SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('fuzz script', () => {
  it.each([
    [['--target', 'tls']],
    [['--inputs', 'many']],
    [['--inputs', '0']],
    [['--seed', '-1']],
    [['--seed', '4294967296']],
    [['--max-seconds', '0']],
    [['--bogus']],
    [['extra']],
  ])('%j: exit status 2 and a usage message', async (args) => {
    const r = await script(args);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^fuzz: .*\nusage: npm run fuzz/);
    expect(r.stdout).toBe('');
  });

  it('a short run of each target: exit 0, a summary per target', async () => {
    const r = await script(['--inputs', '900', '--seed', '3']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^fuzz: seed 3, 900 inputs over codec, deframer, packet/);
    for (const name of ['codec', 'deframer', 'packet']) expect(r.stdout).toMatch(new RegExp(`^fuzz ${name}: 300 inputs in [\\d.]+ s \\(\\d+ inputs/s\\)$`, 'm'));
    expect(r.stdout).toMatch(/fuzz: no findings in [\d.]+ s\n$/);
  });

  it('--index replays one input: the same bytes and pieces the engine makes', async () => {
    const r = await script(['--seed', '3', '--target', 'deframer', '--index', '17']);
    expect(r.status).toBe(0);
    const input = inputAt(deframerTarget, 3, 17);
    expect(r.stdout).toContain(`input (${input.bytes.length} bytes): ${input.bytes.toString('hex')}\n`);
    expect(r.stdout).toContain(`pieces: ${input.pieces!.join(',')}\n`);
    expect(r.stdout).toMatch(/\n {2}(accepted|rejected): /);
  });
});
