/**
 * Pre-shared keys end to end, through the built CLI (dist/bin/sockxfer.js) on 127.0.0.1 port 0:
 * `sockxfer keygen`, keyed transfers over TCP and UDP with the key in a file (--key-file) or in
 * SOCKXFER_KEY, every way a key can be missing or wrong (exit 7, E_AUTH, nothing written), the
 * receiver's warning when it has no key, and the rules on where a key may come from (never the
 * command line, at least 16 bytes, a warning for a file others can read). Every file that
 * arrives is checked byte for byte. Waits are on events and exits, each bounded; never on sleeps.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exitWithin, listDir, randomFile, sha256File, sockxfer, useWorkspace, type JsonEvent, type Proc } from '../helpers/cli.js';

const ws = useWorkspace();

const KINDS = ['tcp', 'udp'] as const;
type Kind = (typeof KINDS)[number];
const transportArgs = (kind: Kind): string[] => (kind === 'udp' ? ['--udp'] : []);
const MiB = 1024 * 1024;

/** No key from the environment unless a test puts one there. */
const NO_ENV_KEY = { SOCKXFER_KEY: '' };

/** A key file like `keygen` writes (base64 text and a newline), mode 0600. */
async function keyFile(name: string, text: string, mode = 0o600): Promise<string> {
  const file = path.join(ws.root, name);
  await fs.writeFile(file, `${text}\n`, { mode });
  await fs.chmod(file, mode);
  return file;
}

const KEY_TEXT = 'c29ja3hmZXIgZTJlIHRlc3Qga2V5OiAzMiBieXRlcyE=';
const OTHER_KEY_TEXT = 'YW5vdGhlciBrZXksIGFsc28gMzIgYnl0ZXMgbG9uZyE=';

/** `receive --port 0 --host 127.0.0.1 --dir out --json ...extra`, once it listens on both transports. */
async function receiver(extra: string[], env: NodeJS.ProcessEnv = NO_ENV_KEY): Promise<{ proc: Proc; address: string }> {
  const proc = sockxfer(['receive', '--port', '0', '--host', '127.0.0.1', '--dir', ws.out, '--json', ...extra], { env });
  const listening = await proc.waitFor((e) => e.event === 'listening' && e.transport === 'udp');
  return { proc, address: `127.0.0.1:${listening.port as number}` };
}

/** `send file address --json ...extra` to its exit. */
async function sender(file: string, address: string, extra: string[], env: NodeJS.ProcessEnv = NO_ENV_KEY): Promise<{ code: number; proc: Proc; last: JsonEvent | undefined }> {
  const proc = sockxfer(['send', file, address, '--json', ...extra], { env });
  const code = await exitWithin(proc, 20_000, `send ${extra.join(' ')}`);
  return { code, proc, last: proc.events.at(-1) };
}

const isWarning = (e: JsonEvent) => e.event === 'warning';

// ---- 9. keygen ------------------------------------------------------------------------------

describe('sockxfer keygen', () => {
  it('writes 32 random bytes in base64, mode 0600; never overwrites (exit 2, file unchanged)', async () => {
    const file = path.join(ws.root, 'new.key');
    const first = sockxfer(['keygen', file, '--json']);
    expect(await exitWithin(first, 10_000, 'keygen'), first.stderr()).toBe(0);
    expect(first.events).toEqual([{ event: 'key', file }]);
    const st = await fs.stat(file);
    expect(st.mode & 0o777).toBe(0o600);
    const text = await fs.readFile(file, 'utf8');
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(text.trim(), 'base64')).toHaveLength(32);

    const again = sockxfer(['keygen', file, '--json']);
    expect(await exitWithin(again, 10_000, 'keygen again'), again.stderr()).toBe(2);
    expect(again.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
    expect(await fs.readFile(file, 'utf8')).toBe(text);
    const after = await fs.stat(file);
    expect(after.mode & 0o777).toBe(0o600);
    expect(after.mtimeMs).toBe(st.mtimeMs);
  });

  it('two keygen runs make different keys', async () => {
    const a = path.join(ws.root, 'a.key');
    const b = path.join(ws.root, 'b.key');
    const [ca, cb] = await Promise.all([sockxfer(['keygen', a]).exited, sockxfer(['keygen', b]).exited]);
    expect([ca, cb]).toEqual([0, 0]);
    expect(await fs.readFile(a, 'utf8')).not.toBe(await fs.readFile(b, 'utf8'));
  });
});

// ---- 10. Keyed transfers ----------------------------------------------------------------------

describe.each(KINDS)('keyed transfer over %s', (kind) => {
  for (const source of ['--key-file', 'SOCKXFER_KEY'] as const) {
    it(`with the key in ${source}: exit 0, byte-identical, start and done say encrypted: true on both sides`, async () => {
      const file = path.join(ws.src, 'secret.bin');
      const sha = await randomFile(file, 2 * MiB + 17);
      let keyArgs: string[] = [];
      let env: NodeJS.ProcessEnv = NO_ENV_KEY;
      if (source === '--key-file') keyArgs = ['--key-file', await keyFile('k', KEY_TEXT)];
      else env = { SOCKXFER_KEY: KEY_TEXT };
      const r = await receiver(['--once', ...keyArgs], env);
      const s = await sender(file, r.address, [...keyArgs, ...transportArgs(kind)], env);
      const receiverCode = await exitWithin(r.proc, 15_000, 'the --once receiver');
      expect(s.code, s.proc.stderr()).toBe(0);
      expect(receiverCode, r.proc.stderr()).toBe(0);
      expect(await sha256File(path.join(ws.out, 'secret.bin'))).toBe(sha);
      expect(await listDir(ws.out)).toEqual(['secret.bin']);
      for (const p of [s.proc, r.proc]) {
        expect(p.events.find((e) => e.event === 'start')).toMatchObject({ transport: kind, encrypted: true });
        expect(p.events.find((e) => e.event === 'done')).toMatchObject({ transport: kind, encrypted: true });
        expect(p.events.filter(isWarning)).toEqual([]);
        expect(p.stray).toEqual([]);
      }
      expect(s.last).toMatchObject({ event: 'done', encrypted: true });
      expect(r.proc.stderr()).toMatch(/only senders with this key are served; transfers are encrypted/);
    });
  }
});

describe('key sources agree', () => {
  it('a key file (trailing newline) on one side, the same key in SOCKXFER_KEY on the other; --key-file wins over SOCKXFER_KEY', async () => {
    const file = path.join(ws.src, 'mixed.bin');
    const sha = await randomFile(file, 500_000);
    const r = await receiver(['--once'], { SOCKXFER_KEY: KEY_TEXT });
    const s = await sender(file, r.address, ['--key-file', await keyFile('k', KEY_TEXT)], { SOCKXFER_KEY: OTHER_KEY_TEXT });
    expect(s.code, s.proc.stderr()).toBe(0);
    expect(await exitWithin(r.proc, 15_000, 'the --once receiver'), r.proc.stderr()).toBe(0);
    expect(await sha256File(path.join(ws.out, 'mixed.bin'))).toBe(sha);
    expect(s.last).toMatchObject({ event: 'done', encrypted: true });
  });
});

// ---- 11. Missing and wrong keys ---------------------------------------------------------------

describe('a key missing or wrong', () => {
  it('wrong key → exit 7, E_AUTH, nothing written; no key → exit 7; neither uses up a --once receiver, which then takes the right key', async () => {
    const file = path.join(ws.src, 'secret.bin');
    const sha = await randomFile(file, 100_000);
    const k = await keyFile('k', KEY_TEXT);
    const other = await keyFile('other', OTHER_KEY_TEXT);
    const r = await receiver(['--once', '--key-file', k]);
    const errors = () => r.proc.events.filter((e) => e.event === 'error');

    const wrong = await sender(file, r.address, ['--key-file', other]);
    expect(wrong.code, wrong.proc.stderr()).toBe(7);
    expect(wrong.last).toMatchObject({ event: 'error', code: 'E_AUTH', exitCode: 7 });
    expect(wrong.proc.events.filter((e) => e.event === 'start' || e.event === 'done')).toEqual([]);
    await r.proc.waitFor(() => errors().length === 1);
    expect(await listDir(ws.out)).toEqual([]);

    const keyless = await sender(file, r.address, []);
    expect(keyless.code, keyless.proc.stderr()).toBe(7);
    expect(keyless.last).toMatchObject({ event: 'error', code: 'E_AUTH', exitCode: 7 });
    await r.proc.waitFor(() => errors().length === 2);
    expect(errors()).toMatchObject([
      { code: 'E_AUTH', exitCode: 7 },
      { code: 'E_AUTH', exitCode: 7 },
    ]);
    expect(r.proc.events.filter((e) => e.event === 'start' || e.event === 'done')).toEqual([]);
    expect(await listDir(ws.out)).toEqual([]);

    // Only a sender that proved the key counts as the one transfer of --once.
    const right = await sender(file, r.address, ['--key-file', k]);
    expect(right.code, right.proc.stderr()).toBe(0);
    expect(await exitWithin(r.proc, 15_000, 'the --once receiver'), r.proc.stderr()).toBe(0);
    expect(await sha256File(path.join(ws.out, 'secret.bin'))).toBe(sha);
    expect(r.proc.events.find((e) => e.event === 'done')).toMatchObject({ encrypted: true });
  });

  it.each(KINDS)('a keyless receiver warns (encrypted: false); a keyed sender refuses it over %s: exit 7, nothing written', async (kind) => {
    const file = path.join(ws.src, 'secret.bin');
    await randomFile(file, 100_000);
    const r = await receiver([]);
    const warning = await r.proc.waitFor(isWarning);
    expect(warning).toMatchObject({ event: 'warning', encrypted: false });
    expect(warning.message).toMatch(/not encrypted/);
    const s = await sender(file, r.address, ['--key-file', await keyFile('k', KEY_TEXT), ...transportArgs(kind)]);
    expect(s.code, s.proc.stderr()).toBe(7);
    expect(s.last).toMatchObject({ event: 'error', code: 'E_AUTH', exitCode: 7 });
    expect(s.last!.message).toMatch(/would not be encrypted/);
    await r.proc.waitFor((e) => e.event === 'error');
    expect(r.proc.events.filter((e) => e.event === 'start' || e.event === 'done')).toEqual([]);
    expect(await listDir(ws.out)).toEqual([]);
  });
});

// ---- 12. Where a key may come from ------------------------------------------------------------

describe('where a key may come from', () => {
  it('--key on the command line is not an option: exit 2, nothing sent', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10);
    const s = await sender(file, '127.0.0.1:9', ['--key', 'secretsecretsecretsecret']);
    expect(s.code, s.proc.stderr()).toBe(2);
    expect(s.proc.stderr()).toMatch(/unknown option '--key'/);
    expect(s.proc.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
  });

  it('a key file of 5 bytes → exit 2, E_USAGE, on either side', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10);
    const short = await keyFile('short', 'abcde');
    const recv = sockxfer(['receive', '--port', '0', '--host', '127.0.0.1', '--dir', ws.out, '--json', '--key-file', short], { env: NO_ENV_KEY });
    const [s, receiveCode] = await Promise.all([sender(file, '127.0.0.1:9', ['--key-file', short]), exitWithin(recv, 10_000, 'receive with a short key')]);
    expect(s.code, s.proc.stderr()).toBe(2);
    expect(s.proc.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
    expect(s.proc.events[0]!.message).toMatch(/is 5 bytes; a key has at least 16/);
    expect(receiveCode, recv.stderr()).toBe(2);
    expect(recv.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
    expect(recv.events.filter((e) => e.event === 'listening')).toEqual([]);
  });

  it('a short key in SOCKXFER_KEY → exit 2, E_USAGE', async () => {
    const file = path.join(ws.src, 'a.bin');
    await randomFile(file, 10);
    const s = await sender(file, '127.0.0.1:9', [], { SOCKXFER_KEY: 'short' });
    expect(s.code, s.proc.stderr()).toBe(2);
    expect(s.proc.events).toMatchObject([{ event: 'error', code: 'E_USAGE', exitCode: 2 }]);
    expect(s.proc.events[0]!.message).toMatch(/SOCKXFER_KEY is 5 bytes/);
  });

  it('a key file with mode 644 works, with a warning event that says to chmod it, on both sides', async () => {
    const file = path.join(ws.src, 'open.bin');
    const sha = await randomFile(file, 300_000);
    const k = await keyFile('k644', KEY_TEXT, 0o644);
    expect((await fs.stat(k)).mode & 0o777).toBe(0o644);
    const r = await receiver(['--once', '--key-file', k]);
    const s = await sender(file, r.address, ['--key-file', k]);
    expect(s.code, s.proc.stderr()).toBe(0);
    expect(await exitWithin(r.proc, 15_000, 'the --once receiver'), r.proc.stderr()).toBe(0);
    expect(await sha256File(path.join(ws.out, 'open.bin'))).toBe(sha);
    for (const p of [s.proc, r.proc]) {
      const warnings = p.events.filter(isWarning);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ keyFile: k });
      expect(warnings[0]!.message).toMatch(/chmod 600/);
      expect(p.events.find((e) => e.event === 'done')).toMatchObject({ encrypted: true });
    }
  });
});
