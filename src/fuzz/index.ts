/**
 * A seeded fuzzer for the three parsers that read bytes from the network: the frame decoder,
 * the TCP stream deframer and the UDP packet parser. `npm run fuzz` (scripts/fuzz.ts) runs it;
 * test/fuzz/fuzz.test.ts runs a short version of it.
 */
import type { FuzzTarget } from './engine.js';
import { codecTarget } from './target-codec.js';
import { deframerTarget } from './target-deframer.js';
import { packetTarget } from './target-packet.js';

export * from './engine.js';
export { Rng, inputSeed } from './random.js';
export { codecTarget, deframerTarget, packetTarget };

/** The targets by name, in the order `--target all` runs them. */
export const TARGETS: ReadonlyMap<string, FuzzTarget> = new Map([codecTarget, deframerTarget, packetTarget].map((t) => [t.name, t]));

/** The seed when none is given: fixed, so two runs without --seed check the same inputs. */
export const DEFAULT_SEED = 20240611;
