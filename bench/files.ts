/** Random test files and their SHA-256, streamed in 4 MiB pieces: shared by the bench, the demo and the tests. */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';

/** Writes `size` random bytes in 4 MiB pieces (flat memory); returns the SHA-256 hex. */
export async function randomFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fsp.open(file, 'w');
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(4 << 20, size - done);
      const buf = randomBytes(n);
      hash.update(buf);
      await handle.write(buf, 0, n);
      done += n;
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** SHA-256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

