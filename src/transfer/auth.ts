/**
 * The key handshake of both sides (the design is in protocol/secure.ts), and the receiver's
 * brake on addresses that keep failing it.
 */
import { randomBytes } from 'node:crypto';
import { SockxferError } from '../errors.js';
import {
  CAP_KEY,
  NONCE_SIZE,
  PROOF_SIZE,
  encodeBody,
  proofMatches,
  proofOf,
  sessionKeys,
  transcriptHash,
  type HelloFrame,
  type WelcomeFrame,
} from '../protocol/index.js';
import type { Transport } from '../transport/index.js';
import { expectFrame } from './peer.js';

/**
 * The sender's side, after HELLO and WELCOME. With a key: answers the receiver's challenge,
 * checks the receiver's proof and seals the connection. Without one: refuses a receiver that
 * wants a key (it would have sent an ERROR instead of a WELCOME, so nothing to do here).
 */
export async function authenticateToReceiver(transport: Transport, key: Buffer | null, hello: HelloFrame, welcome: WelcomeFrame): Promise<void> {
  if (key === null) return;
  if ((welcome.capabilities & CAP_KEY) === 0) {
    // Never fall back to a clear transfer: a key means "encrypted or not at all".
    throw new SockxferError('E_AUTH', `${transport.remote} has no key, so the transfer would not be encrypted; give the receiver the same key (--key-file or SOCKXFER_KEY)`);
  }
  const challenge = await expectFrame(transport, 'auth');
  if (challenge.nonce.length !== NONCE_SIZE || challenge.proof.length !== 0) throw new SockxferError('E_PROTOCOL', `${transport.remote} sent a malformed key challenge`);
  const senderNonce = randomBytes(NONCE_SIZE);
  const th = transcriptHash(encodeBody(hello), encodeBody(welcome), challenge.nonce, senderNonce);
  transport.useKeys(sessionKeys(key, th, 'sender'));
  transport.send({ type: 'auth', nonce: senderNonce, proof: proofOf(key, th, 'sender') });
  const answer = await expectFrame(transport, 'auth');
  if (answer.nonce.length !== 0 || !proofMatches(key, th, 'receiver', answer.proof)) {
    throw new SockxferError('E_AUTH', `${transport.remote} does not prove it holds this key: it is not the receiver you meant, or it has another key`);
  }
  transport.startSealing();
}

/**
 * With a key: refuses a HELLO without one, sends the challenge after `welcome`, checks the
 * sender's proof, proves itself and seals the connection. `throttle` slows down addresses that
 * keep failing. Without a key nothing happens here (a sender with a key refuses us itself).
 */
export async function authenticateSender(
  transport: Transport,
  key: Buffer | null,
  hello: HelloFrame,
  welcome: WelcomeFrame,
  throttle: AuthThrottle | null,
  /** Told how long the brake holds the answer back, before it does (the deadlines must allow for it). */
  onBrake?: (ms: number) => void,
): Promise<void> {
  if (key === null) return;
  const address = hostOf(transport.remote);
  const receiverNonce = randomBytes(NONCE_SIZE);
  transport.send({ type: 'auth', nonce: receiverNonce, proof: Buffer.alloc(0) });
  const answer = await expectFrame(transport, 'auth');
  if (answer.nonce.length !== NONCE_SIZE || answer.proof.length !== PROOF_SIZE) throw new SockxferError('E_PROTOCOL', `${transport.remote} sent a malformed key answer`);
  const th = transcriptHash(encodeBody(hello), encodeBody(welcome), receiverNonce, answer.nonce);
  // Checked after the brake, so that guessing from a failing address goes no faster than it allows.
  const delay = throttle?.admit(address, performance.now()) ?? 0;
  if (delay === null) {
    throw new SockxferError('E_BUSY', `too many failed key attempts from ${address}; answers to it are slowed down, try again later`);
  }
  if (delay > 0) {
    onBrake?.(delay);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  if (!proofMatches(key, th, 'sender', answer.proof)) {
    const failures = throttle?.failed(address, performance.now()) ?? 1;
    const slowed = throttle && failures >= throttle.freeFailures ? `; ${failures} failures from ${address}, answers to it are slowed down` : '';
    throw new SockxferError('E_AUTH', `${transport.remote} does not hold this receiver's key${slowed}`);
  }
  throttle?.succeeded(address);
  transport.useKeys(sessionKeys(key, th, 'receiver'));
  transport.send({ type: 'auth', nonce: Buffer.alloc(0), proof: proofOf(key, th, 'receiver') });
  transport.startSealing();
}

/** The address part of "host:port" or "[v6]:port". */
export function hostOf(remote: string): string {
  const at = remote.lastIndexOf(':');
  const host = at < 0 ? remote : remote.slice(0, at);
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * Failed key handshakes per address, and when the receiver may answer the next attempt from
 * there. The first `freeFailures` failures cost nothing; after them each answer is held back by a
 * step of 1 s, doubling up to `maxStepMs`. Steps queue: attempts from one address are answered
 * one step apart however many arrive at once, so parallel connections guess no faster than one;
 * an attempt that would wait more than `maxWaitMs` is refused at once instead (the sender hears
 * "try later" before its own timeout, never a silent hang). An address is forgotten `forgetMs`
 * after its last failure; at most `maxAddresses` are remembered (the oldest go first), so a flood
 * of addresses cannot grow the table. Pure: time comes in as `now`.
 */
export class AuthThrottle {
  private readonly failures = new Map<string, { count: number; last: number; nextAt: number }>();

  constructor(
    readonly freeFailures = 3,
    private readonly baseDelayMs = 1000,
    private readonly maxStepMs = 16_000,
    private readonly maxWaitMs = 20_000,
    private readonly forgetMs = 10 * 60_000,
    private readonly maxAddresses = 4096,
  ) {}

  /** Records a failure; returns how many `address` has had (within the memory window). */
  failed(address: string, now: number): number {
    const entry = this.entry(address, now);
    const count = (entry?.count ?? 0) + 1;
    this.failures.delete(address); // re-inserted last: the Map's order is the age order
    this.failures.set(address, { count, last: now, nextAt: entry?.nextAt ?? now });
    if (this.failures.size > this.maxAddresses) this.failures.delete(this.failures.keys().next().value!);
    return count;
  }

  /** The right key came from `address`: its failures are forgotten (attempts already queued keep their slots). */
  succeeded(address: string): void {
    const e = this.failures.get(address);
    if (e !== undefined) e.count = 0;
  }

  /** The step between answers to `address` now. */
  stepMs(address: string, now: number): number {
    const count = this.entry(address, now)?.count ?? 0;
    if (count < this.freeFailures) return 0;
    return Math.min(this.baseDelayMs * 2 ** (count - this.freeFailures), this.maxStepMs);
  }

  /**
   * Takes the next answer slot of `address`: how long to hold this attempt's answer back, or null
   * when the queue is too long and the attempt should be refused now.
   */
  admit(address: string, now: number): number | null {
    const entry = this.entry(address, now);
    if (entry === undefined) return 0;
    const answerAt = Math.max(now, entry.nextAt) + this.stepMs(address, now);
    if (answerAt - now > this.maxWaitMs) return null;
    entry.nextAt = answerAt;
    return answerAt - now;
  }

  /** Addresses remembered. */
  get size(): number {
    return this.failures.size;
  }

  private entry(address: string, now: number): { count: number; last: number; nextAt: number } | undefined {
    const e = this.failures.get(address);
    if (e !== undefined && now - e.last > this.forgetMs && now >= e.nextAt) {
      this.failures.delete(address);
      return undefined;
    }
    return e;
  }
}
