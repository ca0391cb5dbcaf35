/** Parsing and printing of "host:port" addresses. */
import { isIPv6 } from 'node:net';
import { SockxferError } from '../errors.js';

export interface HostPort {
  host: string;
  port: number;
}

/** Parses a port number; `allowZero` for listening ("any free port"). */
export function parsePort(text: string, allowZero: boolean): number {
  if (!/^\d{1,5}$/.test(text)) throw new SockxferError('E_USAGE', `"${text}" is not a port number`);
  const port = Number(text);
  if (port > 65535 || (!allowZero && port === 0)) {
    throw new SockxferError('E_USAGE', `port ${port} is out of range (${allowZero ? 0 : 1}-65535)`);
  }
  return port;
}

/** Parses "host:port", "[v6addr]:port" or "v4addr:port". A bare IPv6 address needs brackets. */
export function parseHostPort(text: string): HostPort {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed) {
    const host = bracketed[1]!;
    if (!isIPv6(host)) throw new SockxferError('E_USAGE', `"${host}" in brackets is not an IPv6 address`);
    return { host, port: parsePort(bracketed[2]!, false) };
  }
  const colon = text.lastIndexOf(':');
  if (colon <= 0 || colon === text.length - 1) {
    throw new SockxferError('E_USAGE', `"${text}" is not HOST:PORT (for example backup-host:9000 or [::1]:9000)`);
  }
  const host = text.slice(0, colon);
  if (host.includes(':')) {
    throw new SockxferError('E_USAGE', `"${text}": put an IPv6 address in brackets, as in [${host}]:${text.slice(colon + 1)}`);
  }
  return { host, port: parsePort(text.slice(colon + 1), false) };
}

/** "host:port", with brackets around IPv6 addresses. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
