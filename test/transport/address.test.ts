/** parseHostPort / formatHostPort: HOST:PORT in, with brackets for IPv6; bad input is E_USAGE. */
import { describe, expect, it } from 'vitest';
import { SockxferError } from '../../src/errors.js';
import { formatHostPort, parseHostPort, parsePort } from '../../src/transport/address.js';

function usageError(fn: () => unknown): SockxferError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(SockxferError);
  expect((thrown as SockxferError).code).toBe('E_USAGE');
  expect((thrown as SockxferError).exitCode).toBe(2);
  return thrown as SockxferError;
}

describe('parseHostPort', () => {
  it.each([
    ['h:1', 'h', 1],
    ['example.com:9000', 'example.com', 9000],
    ['127.0.0.1:9000', '127.0.0.1', 9000],
    ['localhost:65535', 'localhost', 65535],
    ['[::1]:9000', '::1', 9000],
    ['[fe80::1%eth0]:22', 'fe80::1%eth0', 22],
    ['[2001:db8::42]:443', '2001:db8::42', 443],
  ])('%s → host %s, port %i', (text, host, port) => {
    expect(parseHostPort(text)).toEqual({ host, port });
  });

  it.each([
    ['h', /not HOST:PORT/],
    [':9000', /not HOST:PORT/],
    ['h:', /not HOST:PORT/],
    ['', /not HOST:PORT/],
    ['h:0', /port 0 is out of range \(1-65535\)/],
    ['h:65536', /port 65536 is out of range/],
    ['h:99999', /port 99999 is out of range/],
    ['h:123456', /"123456" is not a port number/],
    ['h:abc', /"abc" is not a port number/],
    ['h:-1', /"-1" is not a port number/],
    ['h: 80', /" 80" is not a port number/],
    ['[nothex]:1', /"nothex" in brackets is not an IPv6 address/],
    ['[127.0.0.1]:1', /in brackets is not an IPv6 address/],
    ['[::1]:0', /port 0 is out of range/],
  ])('%j is refused with E_USAGE', (text, message) => {
    expect(usageError(() => parseHostPort(text)).message).toMatch(message);
  });

  it('suggests brackets for a bare IPv6 address', () => {
    const err = usageError(() => parseHostPort('::1:9000'));
    expect(err.message).toContain('[::1]:9000');
    expect(err.message).toMatch(/brackets/);
  });
});

describe('parsePort', () => {
  it('takes 0 only when listening', () => {
    expect(parsePort('0', true)).toBe(0);
    expect(usageError(() => parsePort('0', false)).message).toMatch(/out of range \(1-65535\)/);
    expect(parsePort('65535', false)).toBe(65535);
  });
});

describe('formatHostPort', () => {
  it.each([
    ['h', 1, 'h:1'],
    ['example.com', 9000, 'example.com:9000'],
    ['127.0.0.1', 9000, '127.0.0.1:9000'],
    ['::1', 9000, '[::1]:9000'],
    ['fe80::1%eth0', 22, '[fe80::1%eth0]:22'],
  ])('%s and %i → %s', (host, port, text) => {
    expect(formatHostPort(host, port)).toBe(text);
  });

  it('round-trips through parseHostPort', () => {
    for (const text of ['h:1', '[::1]:9000', '[fe80::1%eth0]:22', '10.0.0.1:80']) {
      const { host, port } = parseHostPort(text);
      expect(formatHostPort(host, port)).toBe(text);
    }
  });
});
