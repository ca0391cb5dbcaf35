/** The receiver's brake on addresses that keep failing the key handshake, on a fake clock. */
import { describe, expect, it } from 'vitest';
import { AuthThrottle, hostOf } from '../../src/transfer/auth.js';

describe('AuthThrottle', () => {
  it('three failures are free; then one attempt at a time waits 1 s, doubling, capped at 16 s', () => {
    const t = new AuthThrottle();
    const waits: Array<number | null> = [];
    let now = 0;
    for (let i = 0; i < 9; i++) {
      const wait = t.admit('192.0.2.1', now);
      waits.push(wait);
      now += wait ?? 0; // the answer comes after the wait, and fails
      t.failed('192.0.2.1', now);
      now += 100;
    }
    expect(waits).toEqual([0, 0, 0, 1000, 2000, 4000, 8000, 16000, 16000]);
    expect(t.admit('192.0.2.2', now)).toBe(0);
  });

  it('parallel attempts from one address queue one step apart; past 20 s of queue they are refused (null) at once', () => {
    const t = new AuthThrottle();
    for (let i = 0; i < 4; i++) t.failed('a', 0); // step 2 s
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map(() => t.admit('a', 0))).toEqual([2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000, null]);
    // Another address is not held up by it.
    expect(t.admit('b', 0)).toBe(0);
    // Later, the queue has drained: the step again.
    expect(t.admit('a', 60_000)).toBe(2000);
  });

  it('the right key from an address clears its failures', () => {
    const t = new AuthThrottle();
    for (let i = 0; i < 5; i++) t.failed('a', 0);
    expect(t.stepMs('a', 1)).toBe(4000);
    t.succeeded('a');
    expect(t.stepMs('a', 1)).toBe(0);
    expect(t.failed('a', 2)).toBe(1);
  });

  it('counts per address, and returns the count', () => {
    const t = new AuthThrottle();
    expect(t.failed('a', 0)).toBe(1);
    expect(t.failed('b', 0)).toBe(1);
    expect(t.failed('a', 1)).toBe(2);
  });

  it('forgets an address 10 minutes after its last failure, not before', () => {
    const t = new AuthThrottle();
    for (let i = 0; i < 5; i++) t.failed('a', 0);
    expect(t.stepMs('a', 600_000)).toBe(4000);
    expect(t.stepMs('a', 600_001)).toBe(0);
    expect(t.failed('a', 600_002)).toBe(1);
  });

  it('remembers at most maxAddresses, dropping the oldest first', () => {
    const t = new AuthThrottle(3, 1000, 16_000, 20_000, 600_000, 100);
    for (let i = 0; i < 5; i++) t.failed('first', 0);
    for (let i = 0; i < 150; i++) t.failed(`x${i}`, 1);
    expect(t.size).toBe(100);
    expect(t.stepMs('first', 2)).toBe(0);
    for (let i = 0; i < 3; i++) t.failed('x149', 3);
    expect(t.stepMs('x149', 4)).toBe(2000);
  });
});

describe('hostOf', () => {
  it.each([
    ['127.0.0.1:9000', '127.0.0.1'],
    ['[::1]:9000', '::1'],
    ['[2001:db8::1]:1', '2001:db8::1'],
    ['host', 'host'],
  ])('%s → %s', (remote, host) => {
    expect(hostOf(remote)).toBe(host);
  });
});
