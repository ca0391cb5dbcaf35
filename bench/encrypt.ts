/**
 * The `encrypt` section of `npm run bench`: what the key costs. In each round, the same file is
 * sent four times, file to file over 127.0.0.1: TCP, TCP with --key-file on both sides, UDP
 * (1472-byte datagrams), UDP with the key; the order of each pair alternates between rounds.
 * Reported per transport: the median rate of each (the sender's own transfer seconds, so process
 * start-up is left out) and the ratio encrypted / clear, which holds on a noisy machine where
 * the absolute rates do not. Every output is checked with SHA-256 against the source.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { median } from './lib.js';
import { f2, mbps, row, runXfer, type Context } from './common.js';
import { LOOPBACK_DATAGRAM } from './udp.js';

export type EncryptVariant = 'tcp' | 'tcp+key' | 'udp' | 'udp+key';

export interface EncryptRun {
  round: number;
  variant: EncryptVariant;
  transferSeconds: number;
  mbPerSecond: number;
  senderPeakRssKiB: number | null;
  receiverPeakRssKiB: number | null;
}

export interface EncryptResult {
  size: number;
  rounds: number;
  datagramSize: number;
  runs: EncryptRun[];
  summary: {
    /** Median MB/s per variant. */
    medians: Record<EncryptVariant, number>;
    /** Encrypted / clear, of the medians. */
    tcpRatio: number;
    udpRatio: number;
  };
}

export async function runEncrypt(ctx: Context, rounds: number): Promise<EncryptResult> {
  const keyFile = path.join(ctx.work, 'bench.key');
  await fsp.writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  console.log(`\nencrypt: ${(ctx.size / 2 ** 20).toFixed(0)} MiB file to file, ${rounds} round(s); the key (AES-256-GCM) on and off, TCP and UDP (${LOOPBACK_DATAGRAM}-byte datagrams)`);
  const widths = [6, 9, 10, 10];
  console.log(row(['round', 'variant', 'seconds', 'MB/s'], widths));
  const runs: EncryptRun[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const transport of ['tcp', 'udp'] as const) {
      const pair: EncryptVariant[] = round % 2 === 1 ? [transport, `${transport}+key`] : [`${transport}+key`, transport];
      for (const variant of pair) {
        const keyed = variant.endsWith('+key');
        const r = await runXfer(ctx, {
          label: `sockxfer ${variant}`,
          hash: 'xxh128',
          transport,
          ...(transport === 'udp' ? { datagramSize: LOOPBACK_DATAGRAM } : {}),
          verifyHash: true,
          ...(keyed ? { keyFile } : {}),
        });
        const run: EncryptRun = {
          round,
          variant,
          transferSeconds: r.transferSeconds,
          mbPerSecond: mbps(ctx.size, r.transferSeconds),
          senderPeakRssKiB: r.senderPeakRssKiB,
          receiverPeakRssKiB: r.receiverPeakRssKiB,
        };
        runs.push(run);
        console.log(row([String(round), variant, r.transferSeconds.toFixed(3), run.mbPerSecond.toFixed(1)], widths));
      }
    }
  }
  const med = (v: EncryptVariant) => median(runs.filter((r) => r.variant === v).map((r) => r.mbPerSecond)) ?? NaN;
  const medians = { tcp: med('tcp'), 'tcp+key': med('tcp+key'), udp: med('udp'), 'udp+key': med('udp+key') };
  const summary = { medians, tcpRatio: medians['tcp+key'] / medians.tcp, udpRatio: medians['udp+key'] / medians.udp };
  console.log(`  medians: tcp ${medians.tcp.toFixed(1)} MB/s, tcp+key ${medians['tcp+key'].toFixed(1)} MB/s → ratio ${f2(summary.tcpRatio)}`);
  console.log(`           udp ${medians.udp.toFixed(1)} MB/s, udp+key ${medians['udp+key'].toFixed(1)} MB/s → ratio ${f2(summary.udpRatio)}`);
  return { size: ctx.size, rounds, datagramSize: LOOPBACK_DATAGRAM, runs, summary };
}
