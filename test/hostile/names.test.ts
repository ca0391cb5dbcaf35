/**
 * Issue 5, names: a hostile sender (test/transfer/harness.ts: the project's own encoder, or a
 * hand-built OFFER for names the encoder refuses to make) offers each bad name beside an honest
 * file, into an in-process Receiver (127.0.0.1, port 0, target `base/out`). Each test ends with:
 * the exact wire code of the entry (or of the session), nothing written outside the target folder
 * (`base` and `base/elsewhere` checked, and `/` for absolute names), no temporary file left, the
 * neighbour committed, and an honest sendFile() committed byte-identical afterwards.
 *
 * Already covered elsewhere (not repeated here):
 *
 * | case                               | where                                                                                                          |
 * |------------------------------------|----------------------------------------------------------------------------------------------------------------|
 * | `../x`                             | test/transfer/receiver.test.ts: 'offer named "../x" → ACCEPT refuse E_BAD_NAME (602), VERDICT failed'            |
 * | `a/../../x`                        | test/transfer/hostile-offers.test.ts: 'a path with ".." after a folder → that entry refused E_BAD_NAME (602) …'  |
 * | `/etc/x` (a leading "/")           | test/transfer/hostile-offers.test.ts: 'a path with a leading "/" → …'                                            |
 * | empty, `.`, `..`                   | test/transfer/receiver.test.ts: 'offer named "" / "." / ".." → ACCEPT refuse E_BAD_NAME (602) …'                 |
 * | NUL                                | test/transfer/receiver.test.ts: 'offer named a NUL → ACCEPT refuse E_BAD_NAME (602) …'                           |
 * | `ESC[2J` (and C1 controls)         | test/transfer/receiver.test.ts: 'offer named an ANSI escape …', 'the refusal of an escape-laden name shows it escaped' |
 * | BEL inside a path                  | test/transfer/hostile-offers.test.ts: 'a path with a control character → …'                                      |
 * | a component over 255 bytes         | test/transfer/receiver.test.ts: 'offer with a name of 256 ASCII bytes / 128 × "é" (256 bytes) → …'               |
 * | a path over 4 KiB (4096 bytes)     | test/transfer/hostile-offers.test.ts: 'a path with 4096 bytes → …'; over the wire field (4353 bytes): receiver.test.ts 'a name longer than any wire name field' |
 * | 129 levels deep                    | test/transfer/hostile-offers.test.ts: 'a path with 129 levels → …' (128 accepted: '… exactly 128 levels deep is accepted') |
 * | the same name twice in one offer   | test/transfer/hostile-offers.test.ts: 'the same name twice in one offer → the second refused E_BAD_NAME (602) …' |
 * | `a` as a file and `a/b`            | test/transfer/hostile-offers.test.ts: '"a" as a file and "a/b" in one offer → "a/b" refused E_BAD_NAME (602) …' |
 * | a backslash                        | test/transfer/receiver.test.ts: 'offer named "a\\b" …'; hostile-offers.test.ts: 'a path with a backslash'         |
 *
 * New here: the Windows forms `C:\x`, `C:x`, `\\srv\s\x` and `..\x`; a newline; 10,000 levels
 * (which no wire name field can carry) and 2,048 levels within PATH_MAX; and the same name twice
 * told apart only by Unicode normalization or a trailing slash.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FRAME_TYPE, HASH_ALGORITHMS, MAX_WIRE_NAME_BYTES, WHOLE_TRANSFER, type AcceptEntry, type VerdictFrame } from '../../src/protocol/index.js';
import { WireWriter } from '../../src/protocol/wire.js';
import { seededBytes } from '../helpers/seeded.js';
import { FakeSender, MTIME, offerEntries, rawFrame, sendAll, type EntrySpec } from '../transfer/harness.js';
import {
  base,
  elsewhere,
  expectCleanAndServing,
  expectEntriesFailedCleanAndServing,
  expectRefused,
  port,
  target,
  useReceiverFixture,
} from '../transfer/receiver-fixture.js';

useReceiverFixture();

const CHUNK = 1024;
const contentOf = (index: number, size: number) => seededBytes(size, 500 + index);

/** HELLO, an OFFER of `specs` (files), every accepted file sent honestly; the ACCEPT entries and every VERDICT. */
async function play(specs: EntrySpec[]): Promise<{ accepts: AcceptEntry[]; verdicts: VerdictFrame[] }> {
  const s = await FakeSender.connect(port);
  await s.hello();
  const accepts = await s.offer(offerEntries(specs, CHUNK));
  expect(accepts.map((a) => a.index)).toEqual(specs.map((_s, i) => i));
  for (const a of accepts) if (a.action === 'send') await s.sendEntry(a.index, contentOf(a.index, specs[a.index]!.size ?? 0), CHUNK);
  const verdicts = await s.verdicts();
  expect(verdicts.at(-1)).toMatchObject({ index: WHOLE_TRANSFER, status: 'committed', code: 0 });
  return { accepts, verdicts };
}

const verdictOf = (verdicts: VerdictFrame[], index: number) => {
  const found = verdicts.filter((v) => v.index === index);
  expect(found).toHaveLength(1);
  return found[0]!;
};

/** An OFFER of one file whose name may be longer than the encoder allows (a u16 length, up to 65535 bytes). */
function rawOffer(name: string, size: number): Buffer {
  const body = new WireWriter().u32(CHUNK).u8(HASH_ALGORITHMS.xxh128).u32(1).u64(size).u16(1).u32(0).u8(0).u64(size).u32(0o644).u64(MTIME).str16(name, 65535).toBuffer();
  return rawFrame(FRAME_TYPE.offer, body);
}

describe('Windows path forms and control characters, beside an honest file', () => {
  it.each([
    ['a drive and a backslash', 'C:\\x', /the name contains a path separator/],
    ['a UNC path', '\\\\srv\\s\\x', /the name contains a path separator/],
    ['a parent and a backslash', '..\\x', /the name contains a path separator/],
    ['a backslash inside a folder', 'd/..\\..\\x', /a component of the path: the name contains a path separator/],
    ['a newline', 'evil\nname.txt', /the name contains a NUL or control character/],
    ['a carriage return hiding a name', 'ok.txt\r', /the name contains a NUL or control character/],
  ])('%s (%j) → that entry refused E_BAD_NAME (602), the honest one committed', async (_what, name, reason) => {
    const { accepts, verdicts } = await play([{ name, size: 100 }, { name: 'ok.txt', size: 10 }]);
    expectRefused(accepts[0], 0, 602, /^refused a name: /);
    expect(accepts[0]!.message).toMatch(reason);
    expect(accepts[1]).toEqual(sendAll(1));
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'failed', code: 602, path: '' });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', code: 0, path: 'ok.txt' });
    // Nothing escaped: not beside the target, not at a path a Windows reading of the name would give.
    await expect(fs.lstat(path.join(base.path, 'x'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']], ['ok.txt']);
    expect((await fs.readFile(path.join(target, 'ok.txt'))).equals(contentOf(1, 10))).toBe(true);
  });

  it('"C:x" is an ordinary POSIX name: committed as the file "C:x" inside the target folder, nothing else created', async () => {
    const { accepts, verdicts } = await play([{ name: 'C:x', size: 100 }]);
    expect(accepts).toEqual([sendAll(0)]);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', code: 0, path: 'C:x' });
    expect((await fs.lstat(path.join(target, 'C:x'))).isFile()).toBe(true);
    expect((await fs.readFile(path.join(target, 'C:x'))).equals(contentOf(0, 100))).toBe(true);
    await expect(fs.lstat(path.join(base.path, 'x'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.lstat(path.join(target, 'x'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expectEntriesFailedCleanAndServing([], ['C:x']);
  });
});

describe('depth', () => {
  it('10,000 levels deep ("d/" × 9,999 + "x", 20,000 bytes): no wire name field carries it → ERROR E_PROTOCOL (900) at once', async () => {
    const name = `${'d/'.repeat(9_999)}x`;
    expect(name.split('/')).toHaveLength(10_000);
    const s = await FakeSender.connect(port);
    await s.hello();
    s.sendRaw(rawOffer(name, 10));
    const reply = await s.next();
    expect(reply).toMatchObject({ type: 'error', code: 900 });
    expect((reply as { message: string }).message).toMatch(new RegExp(`name is 19999 bytes, the limit is ${MAX_WIRE_NAME_BYTES}`));
    await s.closed;
    await expectCleanAndServing('E_PROTOCOL');
    expect(await fs.readdir(elsewhere)).toEqual([]);
  });

  it('2,048 levels within PATH_MAX ("d/" × 2,047 + "x", 4,095 bytes) → refused E_BAD_NAME (602) for its depth, no folder created', async () => {
    const name = `${'d/'.repeat(2_047)}x`;
    expect(Buffer.byteLength(name)).toBe(4095);
    const { accepts, verdicts } = await play([{ name, size: 10 }, { name: 'ok.txt', size: 10 }]);
    expectRefused(accepts[0], 0, 602, /^refused a name: the path is 2048 levels deep, the limit is 128/);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'failed', code: 602 });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', path: 'ok.txt' });
    await expectEntriesFailedCleanAndServing([[0, 'E_BAD_NAME']], ['ok.txt']);
  });
});

describe('the same name twice, in disguise', () => {
  it('a folder "a" and a file "a" → the second refused E_BAD_NAME (602) as offered twice; "a" stays a folder', async () => {
    const { accepts, verdicts } = await play([{ name: 'a', kind: 'directory' }, { name: 'a', size: 10 }]);
    expect(accepts[0]).toEqual(sendAll(0));
    expectRefused(accepts[1], 1, 602, /^offered twice: "a"/);
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'failed', code: 602 });
    expect((await fs.lstat(path.join(target, 'a'))).isDirectory()).toBe(true);
    await expectEntriesFailedCleanAndServing([[1, 'E_BAD_NAME']], ['a']);
  });

  it('a file "a" and a file "a/" (a trailing slash) → "a/" refused E_BAD_NAME (602) for its empty component, "a" committed', async () => {
    const { accepts, verdicts } = await play([{ name: 'a', size: 10 }, { name: 'a/', size: 20 }]);
    expect(accepts[0]).toEqual(sendAll(0));
    expectRefused(accepts[1], 1, 602, /^refused a name: a component of the path: the name is empty/);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: 'a' });
    await expectEntriesFailedCleanAndServing([[1, 'E_BAD_NAME']], ['a']);
    expect((await fs.readFile(path.join(target, 'a'))).equals(contentOf(0, 10))).toBe(true);
  });

  it('"é" composed (NFC) and decomposed (NFD): two distinct names to a POSIX file system, both committed, each byte-identical', async () => {
    const nfc = 'caf\u00e9.txt';
    const nfd = 'cafe\u0301.txt';
    const { accepts, verdicts } = await play([{ name: nfc, size: 10 }, { name: nfd, size: 20 }]);
    expect(accepts).toEqual([sendAll(0), sendAll(1)]);
    expect(verdictOf(verdicts, 0)).toMatchObject({ status: 'committed', path: nfc });
    expect(verdictOf(verdicts, 1)).toMatchObject({ status: 'committed', path: nfd });
    expect((await fs.readFile(path.join(target, nfc))).equals(contentOf(0, 10))).toBe(true);
    expect((await fs.readFile(path.join(target, nfd))).equals(contentOf(1, 20))).toBe(true);
    await expectEntriesFailedCleanAndServing([], [nfc, nfd]);
  });
});
