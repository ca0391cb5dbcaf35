/**
 * The disk fills up in the middle of a transfer. The real CLI receiver writes into a 2 MiB tmpfs
 * (mounted per test: the tests run as root; where tmpfs cannot be mounted, a loop-mounted 4 MiB
 * ext4 image instead, and the test fails, never skips, when neither can). The offer fits the free
 * space, so it passes the receiver's statfs check; once data is being written the test fills the
 * rest of the file system, and the next write meets ENOSPC. The sender must exit 8 with
 * E_NO_SPACE, nothing may appear under the final name, and the receiver must live on and serve
 * the next transfer.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exitWithin, randomFile, send, sha256File, sockxfer, startReceiver, stopAll, useWorkspace, within } from '../helpers/cli.js';

const ws = useWorkspace();
const KiB = 1024;

/** Where the small file system is mounted, and how (for the report). */
let small = '';
let mountedWith: 'tmpfs' | 'ext4 loop image' | null = null;

function tryExec(cmd: string, args: string[]): string | null {
  try {
    execFileSync(cmd, args, { stdio: 'pipe' });
    return null;
  } catch (err) {
    return `${cmd} ${args.join(' ')}: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
}

beforeEach(async () => {
  small = path.join(ws.root, 'small');
  await fs.mkdir(small);
  const tmpfs = tryExec('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0755', 'tmpfs', small]);
  if (tmpfs === null) {
    mountedWith = 'tmpfs';
    return;
  }
  const image = path.join(ws.root, 'small.img');
  const loop =
    tryExec('truncate', ['-s', '4M', image]) ?? tryExec('mkfs.ext4', ['-q', '-F', '-m', '0', image]) ?? tryExec('mount', ['-o', 'loop', image, small]);
  if (loop !== null) throw new Error(`cannot mount a small file system for the disk-full tests (neither tmpfs nor an ext4 loop image):\n${tmpfs}\n${loop}`);
  mountedWith = 'ext4 loop image';
});

afterEach(async () => {
  // The receiver runs in the mount: stop it first (useWorkspace's own hook runs after this one).
  await stopAll();
  if (mountedWith !== null) {
    const failure = tryExec('umount', [small]);
    mountedWith = null;
    if (failure !== null) throw new Error(failure);
  }
});

/** Writes `file` in 64 KiB blocks until the file system is full; returns the bytes written. */
async function fillUp(file: string): Promise<number> {
  const handle = await fs.open(file, 'w');
  const block = Buffer.alloc(64 * KiB, 0x5a);
  let written = 0;
  try {
    // Bounded: the file system holds at most a few MiB.
    for (let i = 0; i < 1024; i++) {
      try {
        const { bytesWritten } = await handle.write(block, 0, block.length);
        written += bytesWritten;
        if (bytesWritten < block.length) break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return written;
        throw err;
      }
    }
  } finally {
    await handle.close();
  }
  // A short write: the next one meets ENOSPC.
  const again = await fs.appendFile(file, block).then(
    () => null,
    (err: NodeJS.ErrnoException) => err.code,
  );
  expect(again, 'the file system is full').toBe('ENOSPC');
  return written;
}

describe.each([
  ['tcp', [] as string[]],
  ['udp', ['--udp']],
])('the disk fills up mid-write (%s)', (kind, transportFlags) => {
  it('the sender exits 8 with E_NO_SPACE, nothing lands under the final name, and the receiver serves the next transfer', async () => {
    const big = path.join(ws.src, 'big.bin');
    // Fits the 2 MiB file system when offered, so the free-space check lets it in.
    await randomFile(big, 1536 * KiB);
    const { proc: receiver, address } = await startReceiver(small);
    // 4 Mbit/s: about 3 s for the file, time enough to fill the disk once data is being written.
    const sender = sockxfer(['send', big, address, '--json', '--rate', '4M', '--chunk-size', '64K', ...transportFlags]);
    const progress = await within(
      receiver.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0),
      10_000,
      () => `the receiver to report progress; stderr:\n${receiver.stderr()}`,
    );
    expect(progress.total).toBe(1536 * KiB);
    const filler = path.join(small, 'filler');
    const filled = await fillUp(filler);
    expect(filled).toBeGreaterThan(0);

    const code = await exitWithin(sender, 20_000, 'the sender');
    expect(code, sender.stderr()).toBe(8);
    const last = sender.events.at(-1);
    expect(last).toMatchObject({ event: 'error', code: 'E_NO_SPACE', exitCode: 8 });
    expect(sender.stray).toEqual([]);
    // The receiver reported it too, and is still running.
    const reported = await within(
      receiver.waitFor((e) => (e.event === 'error' || e.event === 'file') && e.code === 'E_NO_SPACE'),
      5000,
      () => `the receiver to report E_NO_SPACE; stderr:\n${receiver.stderr()}`,
    );
    expect(reported).toMatchObject({ code: 'E_NO_SPACE', exitCode: 8 });
    expect(receiver.child.exitCode).toBeNull();
    // Nothing under the final name, no temporary file beside it: only the filler and the
    // receiver's folder of partial data (which may keep what was written, for a resume).
    expect(await fs.lstat(path.join(small, 'big.bin')).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
    expect((await fs.readdir(small)).filter((n) => n !== 'lost+found').sort()).toEqual(expect.arrayContaining(['filler']));
    for (const name of await fs.readdir(small)) expect(['filler', '.sockxfer-partial', 'lost+found']).toContain(name);

    // Room again: the same receiver takes the next transfer, byte for byte.
    await fs.rm(filler);
    const next = path.join(ws.src, 'next.bin');
    await randomFile(next, 100 * KiB);
    const ok = await send(next, address, transportFlags);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.last).toMatchObject({ event: 'done', committed: 1 });
    expect(await sha256File(path.join(small, 'next.bin'))).toBe(await sha256File(next));
    expect(receiver.child.exitCode).toBeNull();
    receiver.child.kill('SIGTERM');
    expect(await exitWithin(receiver, 5000, 'the receiver')).toBe(130);
    expect(mountedWith, `the small file system (${kind})`).not.toBeNull();
  });
});
