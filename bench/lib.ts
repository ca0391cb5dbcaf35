/**
 * Helpers for the loopback benchmark: child processes that are always stopped, files, ports,
 * and small statistics. Every child runs in its own process group so that a wrapper
 * (/usr/bin/time) and the program it runs are stopped together.
 */
export { randomFile, sha256File } from './files.js';
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'dist/bin/sockxfer.js');

/**
 * The Node flags on the CLI's shebang line (`#!/usr/bin/env -S node --flag …`). Someone who runs
 * `sockxfer` gets them, so every Node process the bench starts (the raw blast too) gets them.
 */
export const NODE_FLAGS: string[] = (() => {
  try {
    const first = fs.readFileSync(BIN, 'utf8').split('\n', 1)[0]!;
    const m = /^#!\/usr\/bin\/env -S node(.*)$/.exec(first);
    return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
  } catch {
    return [];
  }
})();

// ---------------------------------------------------------------------------------------------
// Processes

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the process exited. */
  at: number;
}

export interface JsonEvent {
  event: string;
  [key: string]: unknown;
}

export interface Proc {
  name: string;
  child: ChildProcess;
  /** performance.now() just before spawn. */
  started: number;
  exited: Promise<Exit>;
  /** The last 64 KiB of stderr. */
  stderr: () => string;
  /** NDJSON events from stdout (when stdout is a pipe). */
  events: JsonEvent[];
  /** performance.now() when each of `events` was read (same index). */
  eventTimes: number[];
  /** Resolves with the first matching event; rejects if the process exits first or after `ms`. */
  waitFor: (pred: (e: JsonEvent) => boolean, ms: number) => Promise<JsonEvent>;
}

const live = new Set<ChildProcess>();
let shuttingDown = false;

/** From now on start() refuses to start anything (the bench is stopping: a signal). */
export function shutDown(): void {
  shuttingDown = true;
}

export function isShuttingDown(): boolean {
  return shuttingDown;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal); // the whole group: a wrapper and what it runs
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

/** Starts a process in its own process group and tracks it until it exits. */
export function start(name: string, cmd: string, args: string[], stdio: StdioOptions, cwd = ROOT): Proc {
  if (shuttingDown) throw new Error(`${name}: not started, the bench is stopping`);
  const started = performance.now();
  const child = spawn(cmd, args, { cwd, stdio, detached: true });
  live.add(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    stderr = (stderr + s).slice(-65536);
  });
  const events: JsonEvent[] = [];
  const eventTimes: number[] = [];
  const waiters: Array<{ pred: (e: JsonEvent) => boolean; resolve: (e: JsonEvent) => void }> = [];
  if (child.stdout) {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let e: JsonEvent;
      try {
        e = JSON.parse(line) as JsonEvent;
      } catch {
        return;
      }
      events.push(e);
      eventTimes.push(performance.now());
      for (const w of waiters.splice(0)) {
        if (w.pred(e)) w.resolve(e);
        else waiters.push(w);
      }
    });
  }
  const exited = new Promise<Exit>((resolve) => {
    child.once('error', (err) => {
      stderr += `\n${name}: ${err.message}`;
      live.delete(child);
      resolve({ code: null, signal: null, at: performance.now() });
    });
    child.once('exit', (code, signal) => {
      const at = performance.now();
      live.delete(child);
      resolve({ code, signal, at });
    });
  });
  const waitFor = (pred: (e: JsonEvent) => boolean, ms: number) => {
    const seen = events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<JsonEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no awaited event after ${ms / 1000} s; stderr:\n${stderr}`)), ms);
      waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
      void exited.then((x) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${describeExit(x)}) before the awaited event; stderr:\n${stderr.trim()}`));
      });
    });
  };
  return { name, child, started, exited, stderr: () => stderr, events, eventTimes, waitFor };
}

export function describeExit(x: Exit): string {
  return x.signal ? `signal ${x.signal}` : x.code === null ? 'could not start' : `exit ${x.code}`;
}

/** Waits for the process to exit, killing its group after `ms`. */
export async function waitExit(p: Proc, ms: number): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  const r = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (r !== 'timeout') return r;
  killGroup(p.child, 'SIGKILL');
  await p.exited;
  throw new Error(`${p.name} did not finish within ${ms / 1000} s (killed); stderr:\n${p.stderr().trim()}`);
}

/** Stops every process still running (SIGKILL to each group) and waits for them. */
export async function stopAll(): Promise<void> {
  const waits: Array<Promise<unknown>> = [];
  for (const child of [...live]) {
    waits.push(new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve))));
    killGroup(child, 'SIGKILL');
  }
  await Promise.race([Promise.all(waits), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
}

/** Synchronous last resort (process 'exit' handler). */
export function stopAllSync(): void {
  for (const child of live) killGroup(child, 'SIGKILL');
}

/** Runs a command to completion, returning exit code and output (for `sync`, `--version`, ...). */
export async function runCommand(cmd: string, args: string[], ms = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(cmd, cmd, args, ['ignore', 'pipe', 'pipe']);
  let stdout = '';
  p.child.stdout?.setEncoding('utf8');
  p.child.stdout?.on('data', (s: string) => (stdout += s));
  const x = await waitExit(p, ms);
  // 'exit' can precede the last stdout data; wait for the streams to end.
  await new Promise((resolve) => (p.child.stdout && !p.child.stdout.closed ? p.child.stdout.once('close', resolve) : resolve(null)));
  return { code: x.code, stdout, stderr: p.stderr() };
}

/** `command -v NAME` through the shell: the path, or null. */
export async function commandPath(name: string): Promise<string | null> {
  const r = await runCommand('/bin/sh', ['-c', `command -v ${name}`], 10_000);
  const out = r.stdout.trim();
  return r.code === 0 && out ? out : null;
}

// ---------------------------------------------------------------------------------------------
// Files

/** fsync of one file; returns the seconds it took. */
export async function fsyncFile(file: string): Promise<number> {
  const t0 = performance.now();
  const h = await fsp.open(file, 'r+');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------
// Ports

/** A port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function listeningOn127(port: number): boolean {
  // /proc/net/tcp: "sl local_address rem_address st ..."; 0100007F = 127.0.0.1, st 0A = LISTEN.
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let text: string;
  try {
    text = fs.readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return false;
  }
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === want && f[3] === '0A') return true;
  }
  return false;
}

/**
 * Waits until something listens on 127.0.0.1:port, for at most `ms`. netcat gives no ready
 * signal, and a probe connection would be the one connection `nc -l` accepts (it would then
 * exit), so this looks at the kernel's socket table instead: a bounded poll every 5 ms.
 */
export async function waitListening(port: number, p: Proc, ms = 5000): Promise<void> {
  if (!fs.existsSync('/proc/net/tcp')) {
    // Not Linux: no socket table to look at; one bounded pause instead.
    await new Promise((resolve) => setTimeout(resolve, 300));
    return;
  }
  let gone = false;
  void p.exited.then(() => (gone = true));
  const deadline = performance.now() + ms;
  while (!listeningOn127(port)) {
    if (gone) throw new Error(`${p.name} exited before listening on 127.0.0.1:${port}; stderr:\n${p.stderr().trim()}`);
    if (performance.now() > deadline) throw new Error(`${p.name} was not listening on 127.0.0.1:${port} after ${ms / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** 1073741824, 64K, 256M, 1G, 1GiB (binary units). */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) return null;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

export function median(xs: number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Peak RSS in KiB from a GNU time `-f %M -o FILE` file (the last number in it), or null. */
export async function readPeakRssKiB(file: string): Promise<number | null> {
  try {
    const lines = (await fsp.readFile(file, 'utf8')).trim().split('\n');
    const n = Number(lines.at(-1)?.trim());
    return Number.isFinite(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
