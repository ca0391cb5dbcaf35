/** Human-readable sizes, rates and durations for terminal output. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[u]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

export function formatSeconds(s: number): string {
  if (s < 1) return `${(s * 1000).toFixed(0)} ms`;
  if (s < 60) return `${s.toFixed(2)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** Parses a size such as 1048576, 64K, 1M, 4MiB (binary units). */
export function parseSize(text: string): number | null {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) return null;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Number(m[1]) * mult;
}

/** Parses a rate in bits per second with decimal units, as iperf does: 100M, 1.5G, 800k, 2000000. */
export function parseBitRate(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?(\/s)?$/i.exec(text.trim());
  if (!m) return null;
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const v = Number(m[1]) * mult;
  return Number.isFinite(v) ? v : null;
}

/** 12_500_000 bytes/s → "100 Mbit/s". */
export function formatBitRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(2)} Gbit/s`;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`;
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(0)} kbit/s`;
  return `${Math.round(bits)} bit/s`;
}

// DEL and the C1 controls: JSON.stringify escapes C0 controls but passes these through raw, and a
// terminal that shows a log or an event stream may act on them (U+009B is CSI, as ESC [ is).
// eslint-disable-next-line no-control-regex
const UNESCAPED_CONTROL = /[\u007f-\u009f]/g;

/** `value` as one line of JSON with every control character escaped (\uNNNN), so the line is safe to print. */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(UNESCAPED_CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
