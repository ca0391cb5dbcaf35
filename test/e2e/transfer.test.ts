/**
 * End-to-end transfers through the built CLI (dist/bin/sockxfer.js) over 127.0.0.1, port 0:
 * every file arrives byte-identical (SHA-256 of source and result), with its mode and mtime,
 * and nothing but the final names is left in the target folder (no temporary file, no `.sockxfer-partial`).
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listDir, randomFile, send, sha256File, sockxfer, startReceiver, startupEvent, waitForCount, type JsonEvent, useWorkspace } from '../helpers/cli.js';

/** Whether this machine can bind ::1 (decided before the tests are collected, so the skip is visible). */
async function canListen(host: string): Promise<boolean> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return true;
  } catch {
    return false;
  }
}
const HAS_IPV6_LOOPBACK = await canListen('::1');

const ws = useWorkspace();


/** One transfer into a `--once` receiver; both processes have exited when it resolves. */
async function transferOnce(file: string, sendArgs: string[] = [], receiveArgs: string[] = []) {
  const { proc: receiver, address, port } = await startReceiver(ws.out, ['--once', ...receiveArgs]);
  const sent = await send(file, address, sendArgs);
  const receiverCode = await receiver.exited;
  return { sent, receiver, receiverCode, address, port };
}

/** Sends `size` random bytes as `name` and checks the result is byte-identical; returns the events. */
async function roundTrip(name: string, size: number, sendArgs: string[] = []) {
  const file = path.join(ws.src, name);
  const sha = await randomFile(file, size);
  const run = await transferOnce(file, sendArgs);
  expect(run.sent.code, run.sent.stderr).toBe(0);
  expect(run.receiverCode, run.receiver.stderr()).toBe(0);
  expect(await sha256File(path.join(ws.out, name))).toBe(sha);
  // The final name and nothing else: no temporary file left behind, and no .sockxfer-partial after a success.
  expect(await listDir(ws.out)).toEqual([name]);
  const senderDone = run.sent.last!;
  expect(senderDone).toMatchObject({ event: 'done', name, bytes: size, transport: 'tcp', peer: run.address });
  const receiverDone = run.receiver.events.at(-1)!;
  expect(receiverDone).toMatchObject({ event: 'done', name, bytes: size, path: path.join(ws.out, name), hash: senderDone.hash });
  return { ...run, sha, senderDone, receiverDone };
}

describe('byte-identical transfers', () => {
  it('sends an empty file', async () => {
    await roundTrip('empty.bin', 0);
  });

  it('sends a 1-byte file', async () => {
    await roundTrip('one.bin', 1);
  });

  it('sends a file of exactly 4 chunks (64 KiB chunks)', async () => {
    await roundTrip('four-chunks.bin', 4 * 65536, ['--chunk-size', '64K']);
  });

  it('sends a file of 4 chunks and 1 byte (64 KiB chunks)', async () => {
    await roundTrip('four-chunks-and-one.bin', 4 * 65536 + 1, ['--chunk-size', '64K']);
  });

  it('sends 64 MiB of random bytes, with ordered events and at most 4 progress events a second', async () => {
    const size = 64 * 1024 * 1024;
    const { sent, receiver } = await roundTrip('big.bin', size);
    for (const events of [sent.events, receiver.events.filter((e) => !startupEvent(e))]) {
      expect(events[0]!.event).toBe('start');
      expect(events.slice(-2).map((e) => e.event)).toEqual(['file', 'done']);
      expect(events.at(-2)).toMatchObject({ event: 'file', index: 0, name: 'big.bin', kind: 'file', bytes: size, result: 'committed', hash: events.at(-1)!.hash });
      const progress = events.slice(1, -2);
      expect(progress.every((e) => e.event === 'progress' && e.total === size)).toBe(true);
      const bytes = progress.map((e) => e.bytes as number);
      expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
      expect(bytes.at(-1)).toBe(size);
      // Throttled to one per 250 ms, plus the final one at 100 %.
      const seconds = events.at(-1)!.seconds as number;
      expect(progress.length).toBeLessThanOrEqual(Math.floor(seconds * 4) + 2);
    }
  });
});

describe('done events', () => {
  it('with --hash sha256, both done events carry the SHA-256 of the file', async () => {
    const { sha, senderDone, receiverDone } = await roundTrip('hashed.bin', 300_000, ['--hash', 'sha256']);
    expect(senderDone).toMatchObject({ hash: sha, hashAlgorithm: 'sha256' });
    expect(receiverDone).toMatchObject({ hash: sha, hashAlgorithm: 'sha256' });
  });

  it("the receiver's done event names the file, its size, where it was committed and the sender's session", async () => {
    const { senderDone, receiverDone, sent, receiver } = await roundTrip('fields.bin', 12_345);
    const start = sent.events.find((e) => e.event === 'start')!;
    expect(start).toMatchObject({ name: 'fields.bin', bytes: 12_345, hash: 'xxh128', transport: 'tcp' });
    expect(receiverDone).toMatchObject({
      event: 'done',
      session: senderDone.session,
      name: 'fields.bin',
      bytes: 12_345,
      hash: senderDone.hash,
      hashAlgorithm: 'xxh128',
      transport: 'tcp',
      path: path.join(ws.out, 'fields.bin'),
    });
    expect(senderDone.session).toMatch(/^[0-9a-f]{16}$/);
    expect(senderDone.hash).toMatch(/^[0-9a-f]{32}$/);
    expect(typeof receiverDone.seconds).toBe('number');
    expect(typeof receiverDone.bytesPerSecond).toBe('number');
    // The receiver names the sender's end of the connection.
    expect(receiverDone.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(receiver.events[0]).toMatchObject({ event: 'listening', host: '127.0.0.1', transport: 'tcp' });
    expect(receiver.stderr()).toContain(`listening on 127.0.0.1:${receiver.events[0]!.port as number} (tcp)`);
    // The sender's done event has no path: only the receiver knows where the file went.
    expect(senderDone).not.toHaveProperty('path');
  });
});

describe('metadata', () => {
  it('keeps the permission bits and a whole-second mtime', async () => {
    const file = path.join(ws.src, 'meta.bin');
    const sha = await randomFile(file, 5000);
    await fs.chmod(file, 0o640);
    const mtime = new Date(Date.UTC(2020, 0, 2, 3, 4, 5));
    await fs.utimes(file, mtime, mtime);
    const { sent, receiverCode } = await transferOnce(file);
    expect(sent.code, sent.stderr).toBe(0);
    expect(receiverCode).toBe(0);
    const result = await fs.stat(path.join(ws.out, 'meta.bin'));
    expect(result.mode & 0o777).toBe(0o640);
    expect(result.mtimeMs).toBe(mtime.getTime());
    expect(await sha256File(path.join(ws.out, 'meta.bin'))).toBe(sha);
  });

  // futimes() takes float seconds and truncates them; the millisecond must survive that.
  it('keeps the mtime to the millisecond', async () => {
    const file = path.join(ws.src, 'mtime.bin');
    await randomFile(file, 100);
    const mtime = new Date(Date.UTC(2020, 8, 13, 12, 26, 40, 123));
    await fs.utimes(file, mtime, mtime);
    const { sent, receiverCode } = await transferOnce(file);
    expect(sent.code, sent.stderr).toBe(0);
    expect(receiverCode).toBe(0);
    const before = await fs.stat(file);
    const after = await fs.stat(path.join(ws.out, 'mtime.bin'));
    expect(Math.floor(after.mtimeMs)).toBe(Math.floor(before.mtimeMs));
  });
});

describe('several senders', () => {
  it('takes 8 senders at once, each file intact under its own name', async () => {
    const { proc: receiver, address } = await startReceiver(ws.out);
    const names = Array.from({ length: 8 }, (_, i) => `file-${i}.bin`);
    const shas = new Map<string, string>();
    for (const [i, name] of names.entries()) shas.set(name, await randomFile(path.join(ws.src, name), 200_000 + i * 1013));
    const results = await Promise.all(names.map((name) => send(path.join(ws.src, name), address)));
    for (const r of results) expect(r.code, r.stderr).toBe(0);

    const done = await waitForCount(receiver, (e) => e.event === 'done', 8);
    expect(done.map((e) => e.name).sort()).toEqual(names);
    expect(new Set(done.map((e) => e.session)).size).toBe(8);
    for (const [i, name] of names.entries()) {
      const senderDone = results[i]!.last!;
      const receiverDone = done.find((e) => e.name === name)!;
      expect(senderDone).toMatchObject({ event: 'done', name });
      expect(receiverDone).toMatchObject({ session: senderDone.session, hash: senderDone.hash, bytes: 200_000 + i * 1013, path: path.join(ws.out, name) });
      expect(await sha256File(path.join(ws.out, name))).toBe(shas.get(name));
    }
    expect(receiver.events.filter((e) => e.event === 'error')).toEqual([]);
    expect(await listDir(ws.out)).toEqual(names);
  });

  it('two senders of the same name at once: one commits, the other is refused with E_EXISTS', async () => {
    const { proc: receiver, address } = await startReceiver(ws.out);
    await fs.mkdir(path.join(ws.src, 'a'));
    await fs.mkdir(path.join(ws.src, 'b'));
    const fileA = path.join(ws.src, 'a', 'same.bin');
    const fileB = path.join(ws.src, 'b', 'same.bin');
    const shaA = await randomFile(fileA, 2 * 1024 * 1024);
    const shaB = await randomFile(fileB, 2 * 1024 * 1024);
    const [a, b] = await Promise.all([send(fileA, address), send(fileB, address)]);

    expect([a.code, b.code].sort()).toEqual([0, 6]);
    const [winner, loser, winnerSha] = a.code === 0 ? [a, b, shaA] : [b, a, shaB];
    expect(winner.last).toMatchObject({ event: 'done', name: 'same.bin' });
    expect(loser.last).toMatchObject({ event: 'error', code: 'E_EXISTS', exitCode: 6 });
    // The committed file is the whole of the winner's file, not a mix.
    expect(await sha256File(path.join(ws.out, 'same.bin'))).toBe(winnerSha);

    // Once the receiver has finished with both, only the final file is left.
    await waitForCount(receiver, (e) => e.event === 'done' || e.event === 'error', 2);
    expect(receiver.events.filter((e) => e.event === 'done')).toHaveLength(1);
    expect(receiver.events.filter((e) => e.event === 'error')).toMatchObject([{ code: 'E_EXISTS', exitCode: 6 }]);
    expect(await listDir(ws.out)).toEqual(['same.bin']);
  });
});

describe('--overwrite', () => {
  it('replaces an existing file with the new content', async () => {
    const target = path.join(ws.out, 'replace.bin');
    await randomFile(target, 70_000);
    const file = path.join(ws.src, 'replace.bin');
    const sha = await randomFile(file, 50_000);
    const { sent, receiverCode } = await transferOnce(file, [], ['--overwrite']);
    expect(sent.code, sent.stderr).toBe(0);
    expect(receiverCode).toBe(0);
    expect(await sha256File(target)).toBe(sha);
    expect(await listDir(ws.out)).toEqual(['replace.bin']);
  });
});

describe('IPv6', () => {
  // Skipped only where the machine has no IPv6 loopback (::1 cannot be bound).
  it.skipIf(!HAS_IPV6_LOOPBACK)('sends to [::1]:port', async () => {
    const receiver = sockxfer(['receive', '--port', '0', '--host', '::1', '--dir', ws.out, '--json', '--once']);
    const listening = await receiver.waitFor((e: JsonEvent) => e.event === 'listening');
    expect(listening).toMatchObject({ host: '::1', transport: 'tcp' });
    const port = listening.port as number;

    const file = path.join(ws.src, 'v6.bin');
    const sha = await randomFile(file, 100_000);
    const sent = await send(file, `[::1]:${port}`);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.last).toMatchObject({ event: 'done', name: 'v6.bin', peer: `[::1]:${port}` });
    expect(await receiver.exited).toBe(0);
    expect(receiver.stderr()).toContain(`listening on [::1]:${port} (tcp)`);
    expect(receiver.events.at(-1)).toMatchObject({ event: 'done', name: 'v6.bin', peer: expect.stringMatching(/^\[::1\]:\d+$/) });
    expect(await sha256File(path.join(ws.out, 'v6.bin'))).toBe(sha);
    expect(await listDir(ws.out)).toEqual(['v6.bin']);
  });
});
