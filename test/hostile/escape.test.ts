/**
 * Issue 5, what a hostile sender can make a receiver print: the real CLI (dist/bin/sockxfer.js,
 * through test/helpers/cli.ts) receives, with `--log FILE`, from a hostile sender that puts
 * terminal control sequences everywhere it can: in entry names (ESC[2J, a newline, a BEL, a C1
 * CSI, DEL, in a file and in a folder), in its HELLO's software string, and in the message of an
 * ERROR frame. The receiver's human stderr, its `--log` lines (and its `--json` lines) must carry
 * none of them raw: they are escaped (\xNN on stderr, \uNNNN in JSON), and each JSON line parses
 * back to the exact name. The receiver then still serves an honest `sockxfer send`,
 * byte-identical. Nothing is written outside the target folder.
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                                                          | where                                                                                  |
 * |---------------------------------------------------------------|----------------------------------------------------------------------------------------|
 * | printableName escapes every C0, DEL and C1 character          | test/transfer/names.test.ts: 'escapes every control character, and its output has none left' |
 * | the refusal sent back to the sender shows the name escaped    | test/transfer/receiver.test.ts: 'the refusal of an escape-laden name shows it escaped'  |
 * | ACCEPT refusal messages carry no control character            | test/transfer/receiver-fixture.ts expectRefused(), used by every refusal test           |
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { seededBytes } from '../helpers/seeded.js';
import { randomFile, send, sha256File, startReceiver, useWorkspace, waitForCount, within, exitWithin, type Proc } from '../helpers/cli.js';
import { FakeSender, offerEntries, offerOf } from '../transfer/harness.js';

const ws = useWorkspace();

/** C0 controls, DEL and C1 controls: what a terminal may act on. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

const ESC_NAME = 'evil\u001b[2J.txt';
const NEWLINE_NAME = 'two\nlines.txt';
const BEL_NAME = 'bell\u0007.txt';
const C1_NAME = 'csi\u009b2J.txt';
const DEL_NAME = 'del\u007f.txt';
const FOLDER_NAME = 'dir\u001b]0;title\u0007/x.txt';

/** Waits until `proc` has printed `n` events of kind `event`. */
function events(proc: Proc, event: string, n: number) {
  return within(waitForCount(proc, (e) => e.event === event, n), 10_000, () => `${n} ${event} events; stderr:\n${proc.stderr()}`);
}

it('names, software and messages full of terminal controls: the receiver prints them escaped on stderr, in --log and --json, and still serves an honest sender', async () => {
  const log = path.join(ws.root, 'receiver.log');
  const { proc, port, address } = await startReceiver(ws.out, ['--log', log]);

  // 1. One file named with ESC[2J (clear the screen): refused, E_BAD_NAME.
  const one = await FakeSender.connect(port);
  await one.hello();
  expect(await one.offer(offerOf(ESC_NAME, 10, 1024))).toMatchObject([{ index: 0, action: 'refuse', code: 602 }]);
  expect((await one.verdicts())[0]).toMatchObject({ status: 'failed', code: 602 });
  await events(proc, 'error', 1);

  // 2. Many: a newline, a BEL, a C1 CSI, DEL, an OSC title sequence in a folder name, and an honest file.
  const many = await FakeSender.connect(port);
  await many.hello();
  const names = [NEWLINE_NAME, BEL_NAME, C1_NAME, DEL_NAME, FOLDER_NAME, 'ok.txt'];
  const accepts = await many.offer(offerEntries(names.map((name) => ({ name, size: name === 'ok.txt' ? 10 : 5 })), 1024));
  expect(accepts.map((a) => [a.action, a.code])).toEqual([...Array(5).fill(['refuse', 602]), ['send', 0]]);
  await many.sendEntry(5, seededBytes(10, 1), 1024);
  expect((await many.verdicts()).find((v) => v.index === 5)).toMatchObject({ status: 'committed', path: 'ok.txt' });
  await events(proc, 'error', 2);

  // 3. A HELLO from software named with ESC[2J, for versions this receiver does not speak: E_VERSION.
  const old = await FakeSender.connect(port);
  old.send({ type: 'hello', minVersion: 3, maxVersion: 4, capabilities: 0, software: 'x\u001b[2J\u0007\u009b' });
  expect(await old.next()).toMatchObject({ type: 'error', code: 901 });
  await events(proc, 'error', 3);

  // 4. A sender that gives up mid-file with an ERROR whose message is a control sequence.
  const quitter = await FakeSender.connect(port);
  await quitter.offerAccepted('quit.bin', 4096, 1024);
  quitter.send({ type: 'error', code: 800, message: 'gone\u001b[2J\n\u0007\u009b' });
  await quitter.closed;
  await events(proc, 'error', 4);

  // 5. An honest sender still gets through.
  const file = path.join(ws.src, 'honest.bin');
  const sha = await randomFile(file, 100_000);
  const sent = await send(file, address);
  expect(sent.code, sent.stderr).toBe(0);
  await events(proc, 'done', 1);
  expect(await sha256File(path.join(ws.out, 'honest.bin'))).toBe(sha);

  // Stopped: the log is flushed before exit.
  proc.child.kill('SIGTERM');
  expect(await exitWithin(proc, 10_000, 'the receiver after SIGTERM')).toBe(130);

  // stderr: every line is one of the receiver's own, with no control character in it.
  const stderr = proc.stderr();
  const lines = stderr.split('\n').slice(0, -1);
  for (const line of lines) {
    expect(line, JSON.stringify(line)).not.toMatch(CONTROL);
    expect(line, JSON.stringify(line)).toMatch(/^(listening on |writing to |received |  tcp: |stopping: |sockxfer: )/);
  }
  expect(stderr).toContain('evil\\x1b[2J.txt');
  expect(stderr).toContain('two\\x0alines.txt');
  expect(stderr).toContain('bell\\x07.txt');
  expect(stderr).toContain('csi\\x9b2J.txt');
  expect(stderr).toContain('del\\x7f.txt');
  expect(stderr).toContain('dir\\x1b]0;title\\x07/x.txt');
  expect(stderr).toContain('(x\\x1b[2J\\x07\\x9b) speaks protocol versions 3-4');
  expect(stderr).toContain('reported an error: gone\\x1b[2J\\x0a\\x07\\x9b');

  // --log: one JSON line per transfer, no raw control character, each parsing back to the exact names.
  const text = await fs.readFile(log, 'utf8');
  const records = text.split('\n').slice(0, -1);
  expect(records).toHaveLength(5);
  for (const r of records) expect(r, r).not.toMatch(CONTROL);
  const parsed = records.map((r) => JSON.parse(r) as { result: string; code?: string; name?: string; entries?: Array<{ name: string; result: string; code?: string }> });
  expect(parsed[0]).toMatchObject({ result: 'failed', code: 'E_BAD_NAME', entries: [{ name: ESC_NAME, result: 'failed', code: 'E_BAD_NAME' }] });
  expect(parsed[1]!.entries!.map((e) => [e.name, e.result])).toEqual(names.map((n) => [n, n === 'ok.txt' ? 'committed' : 'failed']));
  expect(parsed[2]).toMatchObject({ result: 'failed', code: 'E_VERSION' });
  expect(parsed[3]).toMatchObject({ result: 'failed', code: 'E_IO', name: 'quit.bin' });
  expect(parsed[4]).toMatchObject({ result: 'ok', entries: [{ name: 'honest.bin', result: 'committed' }] });

  // --json: the same holds for the events on stdout.
  const stdout = proc.stdout().toString('utf8');
  for (const line of stdout.split('\n').slice(0, -1)) expect(line, line).not.toMatch(CONTROL);
  expect(proc.stray).toEqual([]);
  expect(proc.events.find((e) => e.event === 'file' && e.name === C1_NAME)).toMatchObject({ result: 'failed', code: 'E_BAD_NAME' });

  // Nothing but the honest files (and no temporary file) in the target folder, nothing beside it.
  expect((await fs.readdir(ws.out)).sort()).toEqual(['honest.bin', 'ok.txt']);
  expect((await fs.readdir(ws.root)).sort()).toEqual(['out', 'receiver.log', 'src']);
});
