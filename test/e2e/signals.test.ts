/**
 * End-to-end signal handling: SIGINT and SIGTERM stop a sender or a receiver cleanly, with exit
 * 130 and an E_INTERRUPTED error event. A transfer cut short leaves nothing under the final
 * name: the receiver keeps its partial data in `.sockxfer-partial` (a `<key>.part` + `<key>.journal`
 * pair) for a later resume. "Mid-transfer" is made deterministic with a 2 GiB sparse file and a
 * signal sent when the receiver reports its first bytes written.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { listDir, sockxfer, sparseFile, startReceiver, type Proc, useWorkspace } from '../helpers/cli.js';
import { expectInProgress, expectKeptForResume } from '../helpers/partial.js';

const BIG = 2 * 1024 ** 3;

const ws = useWorkspace();


/** Starts sending a 2 GiB sparse file and resolves once the receiver has written part of it. */
async function midTransfer(receiverArgs: string[], senderArgs: string[] = []): Promise<{ receiver: Proc; sender: Proc }> {
  const file = path.join(ws.src, 'big.bin');
  await sparseFile(file, BIG);
  const { proc: receiver, address } = await startReceiver(ws.out, receiverArgs);
  const sender = sockxfer(['send', file, address, '--json', ...senderArgs]);
  await receiver.waitFor((e) => e.event === 'progress' && (e.bytes as number) > 0);
  // The file in progress exists now (in .sockxfer-partial), so the checks on what is left below are real ones.
  await expectInProgress(ws.out, 'big.bin');
  return { receiver, sender };
}

describe('receiver', () => {
  for (const [transport, sendArgs] of [['tcp', []], ['udp', ['--udp']]] as const) {
    it(`SIGTERM mid-transfer over ${transport}: exits 130 with E_INTERRUPTED last, keeps the partial data for a resume, nothing under the final name; the sender exits 3`, async () => {
      const { receiver, sender } = await midTransfer([], [...sendArgs]);
      receiver.child.kill('SIGTERM');

      expect(await receiver.exited, receiver.stderr()).toBe(130);
      expect(receiver.events.at(-1)).toEqual({ event: 'error', code: 'E_INTERRUPTED', exitCode: 130, message: 'interrupted by SIGTERM' });
      // The transfer it cut short is reported as such, before the final event.
      expect(receiver.events.at(-2)).toMatchObject({ event: 'error', code: 'E_INTERRUPTED', exitCode: 130, name: 'big.bin', session: expect.any(String) });
      await expectKeptForResume(ws.out, 'big.bin', BIG);

      // For the sender, an interrupted receiver is a lost connection (README: exit 3, worth retrying).
      expect(await sender.exited, sender.stderr()).toBe(3);
      expect(sender.events.at(-1)).toMatchObject({ event: 'error', code: 'E_CONNECTION_LOST', exitCode: 3 });
    });
  }

  it('SIGTERM mid-transfer with --once: exits 130, keeps the partial data for a resume, nothing under the final name', async () => {
    const { receiver, sender } = await midTransfer(['--once']);
    receiver.child.kill('SIGTERM');
    expect(await receiver.exited, receiver.stderr()).toBe(130);
    expect(receiver.events.at(-1)).toMatchObject({ event: 'error', code: 'E_INTERRUPTED', exitCode: 130 });
    await expectKeptForResume(ws.out, 'big.bin', BIG);
    expect(await sender.exited, sender.stderr()).toBe(3);
  });

  for (const [signal, args] of [
    ['SIGTERM', []],
    ['SIGINT', []],
    ['SIGTERM', ['--once']],
  ] as const) {
    it(`${signal} when idle${args.length ? ` (${args.join(' ')})` : ''}: exits 130 promptly`, async () => {
      const { proc: receiver } = await startReceiver(ws.out, [...args]);
      const sent = performance.now();
      receiver.child.kill(signal);
      expect(await receiver.exited, receiver.stderr()).toBe(130);
      // Nothing to wait for: no transfer, no grace period. Generous for a loaded 2-core machine.
      expect(performance.now() - sent).toBeLessThan(2000);
      // Without a key, the receiver warns that transfers are not encrypted.
      expect(receiver.events.map((e) => e.event)).toEqual(['listening', 'listening', 'warning', 'error']);
      expect(receiver.events[2]).toMatchObject({ event: 'warning', encrypted: false });
      expect(receiver.events[3]).toEqual({ event: 'error', code: 'E_INTERRUPTED', exitCode: 130, message: `interrupted by ${signal}` });
      expect(receiver.stray).toEqual([]);
      expect(await listDir(ws.out)).toEqual([]);
    });
  }
});

describe('sender', () => {
  for (const [transport, sendArgs] of [['tcp', []], ['udp', ['--udp']]] as const) {
    it(`SIGINT mid-transfer over ${transport}: exits 130 with E_INTERRUPTED; the receiver sees a lost connection and keeps the partial data for a resume, nothing under the final name`, async () => {
      const { receiver, sender } = await midTransfer(['--once'], [...sendArgs]);
      sender.child.kill('SIGINT');

      expect(await sender.exited, sender.stderr()).toBe(130);
      expect(sender.events.at(-1)).toEqual({ event: 'error', code: 'E_INTERRUPTED', exitCode: 130, message: 'interrupted by SIGINT' });
      expect(sender.stray).toEqual([]);

      // For the receiver, an interrupted sender is a lost connection (README: exit 3), not its own interruption.
      expect(await receiver.exited, receiver.stderr()).toBe(3);
      expect(receiver.events.at(-1)).toMatchObject({ event: 'error', code: 'E_CONNECTION_LOST', exitCode: 3, name: 'big.bin' });
      await expectKeptForResume(ws.out, 'big.bin', BIG);
    });
  }
});
