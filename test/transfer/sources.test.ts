/**
 * collectSources on real temporary folders: the flat list of entries a sender offers (folders
 * before what they hold, byte-wise sorted, relative names), what it skips (links, cycles,
 * special files) and what it refuses before any connection is made.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dir, type DirectoryResult } from 'tmp-promise';
import { SockxferError, type ErrorCode } from '../../src/errors.js';
import { collectSources, type Source } from '../../src/transfer/sources.js';

let tmp: DirectoryResult;
let root: string;

beforeEach(async () => {
  tmp = await dir({ unsafeCleanup: true });
  root = tmp.path;
});

afterEach(async () => {
  await tmp.cleanup();
});

/** Creates `rel` under root: a folder when it ends in "/", else a file of `content`. */
async function make(rel: string, content = ''): Promise<string> {
  const p = path.join(root, rel);
  if (rel.endsWith('/')) {
    await fs.mkdir(p, { recursive: true });
  } else {
    await fs.mkdir(path.dirname(p), { recursive: true });
    await fs.writeFile(p, content);
  }
  return p;
}

async function expectRejected(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => expect.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SockxferError);
  expect((err as SockxferError).code).toBe(code);
  expect((err as SockxferError).message).toMatch(message);
}

const names = (sources: Source[]) => sources.map((s) => s.name);

describe('collectSources', () => {
  it('lists folders before their contents, each folder byte-wise sorted (not by locale), with relative names', async () => {
    for (const rel of ['top/é.txt', 'top/ab', 'top/a.txt', 'top/a.b', 'top/a b.txt', 'top/Z/z.txt', 'top/B.txt', 'top/sub/x.txt', 'top/sub/inner/deep.txt']) await make(rel, rel);
    const { sources, skipped } = await collectSources([path.join(root, 'top')]);
    expect(skipped).toEqual([]);
    expect(names(sources)).toEqual([
      'top',
      'top/B.txt',
      'top/Z',
      'top/Z/z.txt',
      'top/a b.txt',
      'top/a.b',
      'top/a.txt',
      'top/ab',
      'top/sub',
      'top/sub/inner',
      'top/sub/inner/deep.txt',
      'top/sub/x.txt',
      'top/é.txt',
    ]);
    for (const s of sources) {
      const abs = path.join(root, ...s.name.split('/'));
      const st = await fs.stat(abs);
      expect(s, s.name).toEqual({
        kind: st.isDirectory() ? 'directory' : 'file',
        name: s.name,
        path: abs,
        size: st.isDirectory() ? 0 : st.size,
        mode: st.mode & 0o777,
        mtimeMs: Math.floor(st.mtimeMs),
      });
    }
  });

  it('keeps the order of the paths it is given; a relative path is named by its last component', async () => {
    await make('one/file.txt', '1');
    await make('two.txt', '22');
    // Relative to the working directory, one of them with "./" and a trailing "/".
    const rel = (p: string) => path.relative(process.cwd(), path.join(root, p));
    const { sources } = await collectSources([rel('two.txt'), `./${rel('one')}/`]);
    expect(sources.map((s) => [s.kind, s.name, s.path])).toEqual([
      ['file', 'two.txt', path.join(root, 'two.txt')],
      ['directory', 'one', path.join(root, 'one')],
      ['file', 'one/file.txt', path.join(root, 'one', 'file.txt')],
    ]);
  });

  it('follows a link named on the command line, under the link name', async () => {
    await make('real/inside.txt', 'x');
    await fs.symlink(path.join(root, 'real'), path.join(root, 'alias'));
    const { sources } = await collectSources([path.join(root, 'alias')]);
    expect(sources.map((s) => [s.kind, s.name])).toEqual([
      ['directory', 'alias'],
      ['file', 'alias/inside.txt'],
    ]);
  });

  it('skips links inside folders unless told to follow them; a dangling one is skipped either way', async () => {
    await make('top/target.txt', 'target bytes');
    await make('top/dir/in-dir.txt', 'in dir');
    await fs.symlink('target.txt', path.join(root, 'top', 'file-link'));
    await fs.symlink('dir', path.join(root, 'top', 'dir-link'));
    await fs.symlink('nowhere', path.join(root, 'top', 'dangling'));

    const plain = await collectSources([path.join(root, 'top')]);
    expect(names(plain.sources)).toEqual(['top', 'top/dir', 'top/dir/in-dir.txt', 'top/target.txt']);
    expect(plain.skipped).toEqual(
      ['dangling', 'dir-link', 'file-link'].map((n) => ({ path: path.join(root, 'top', n), reason: expect.stringMatching(/^symbolic link \(not followed/) })),
    );

    const followed = await collectSources([path.join(root, 'top')], { followSymlinks: true });
    expect(names(followed.sources)).toEqual(['top', 'top/dir', 'top/dir/in-dir.txt', 'top/dir-link', 'top/dir-link/in-dir.txt', 'top/file-link', 'top/target.txt']);
    const link = followed.sources.find((s) => s.name === 'top/file-link')!;
    expect(link).toMatchObject({ kind: 'file', size: 'target bytes'.length, path: path.join(root, 'top', 'file-link') });
    expect(followed.skipped).toEqual([{ path: path.join(root, 'top', 'dangling'), reason: 'symbolic link to nothing' }]);
  });

  it('with followSymlinks, a link back to an ancestor is skipped as a cycle; a link to a sibling folder is not', async () => {
    await make('top/sub/file.txt', 'f');
    await make('top/other/o.txt', 'o');
    await fs.symlink('..', path.join(root, 'top', 'sub', 'up'));
    await fs.symlink('.', path.join(root, 'top', 'self'));
    await fs.symlink('../other', path.join(root, 'top', 'sub', 'sibling'));
    const { sources, skipped } = await collectSources([path.join(root, 'top')], { followSymlinks: true });
    expect(names(sources)).toEqual(['top', 'top/other', 'top/other/o.txt', 'top/sub', 'top/sub/file.txt', 'top/sub/sibling', 'top/sub/sibling/o.txt']);
    expect(skipped).toEqual([
      { path: path.join(root, 'top', 'self'), reason: expect.stringMatching(/cycle/) },
      { path: path.join(root, 'top', 'sub', 'up'), reason: expect.stringMatching(/cycle/) },
    ]);
  });

  it('skips a socket inside a folder; refuses one named on the command line', async () => {
    await make('top/plain.txt', 'p');
    const socketPath = path.join(root, 'top', 'sock');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const { sources, skipped } = await collectSources([path.join(root, 'top')]);
      expect(names(sources)).toEqual(['top', 'top/plain.txt']);
      expect(skipped).toEqual([{ path: socketPath, reason: expect.stringMatching(/not a regular file or folder/) }]);
      await expectRejected(collectSources([socketPath]), 'E_USAGE', /is not a regular file or a folder/);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('"-" is standard input, sent under streamName', async () => {
    await make('f.txt', 'f');
    const { sources } = await collectSources([path.join(root, 'f.txt'), '-'], { streamName: 'piped.log' });
    expect(sources[1]).toMatchObject({ kind: 'stream', name: 'piped.log', path: null, size: 0 });
    expect(sources).toHaveLength(2);
  });

  it.each([
    ['without a streamName', undefined],
    ['with an empty streamName', ''],
  ])('"-" %s → E_USAGE', async (_what, streamName) => {
    await expectRejected(collectSources(['-'], { streamName }), 'E_USAGE', /needs --name/);
  });

  it('"-" twice → E_USAGE', async () => {
    await expectRejected(collectSources(['-', '-'], { streamName: 'x' }), 'E_USAGE', /standard input \("-"\) can be sent once/);
  });

  it('two paths with one base name, or a path named like the stream → E_USAGE', async () => {
    await make('x/same.txt', 'x');
    await make('y/same.txt', 'y');
    await expectRejected(collectSources([path.join(root, 'x', 'same.txt'), path.join(root, 'y', 'same.txt')]), 'E_USAGE', /would both arrive as "same\.txt"/);
    await expectRejected(collectSources([path.join(root, 'x', 'same.txt'), '-'], { streamName: 'same.txt' }), 'E_USAGE', /would both arrive as "same\.txt"/);
  });

  it('the root folder → E_USAGE', async () => {
    await expectRejected(collectSources(['/']), 'E_USAGE', /cannot send the root folder/);
  });

  it('a path that does not exist → E_NOT_FOUND', async () => {
    await expectRejected(collectSources([path.join(root, 'missing')]), 'E_NOT_FOUND', /cannot read .*missing/);
  });

  it('an unreadable file named on the command line → E_PERMISSION, before anything is sent', async () => {
    const p = await make('secret.txt', 'secret');
    await fs.chmod(p, 0o000);
    if (process.getuid?.() !== 0) {
      await expectRejected(collectSources([p]), 'E_PERMISSION', /cannot read .*secret\.txt/);
      return;
    }
    // Root reads anything: as root, the same check runs as nobody, in a child process, on the
    // built module (npm test builds first).
    await fs.chmod(root, 0o755);
    const module = pathToFileURL(path.resolve('dist/src/transfer/sources.js')).href;
    const script = `import { collectSources } from ${JSON.stringify(module)};
collectSources([${JSON.stringify(p)}]).then(() => console.log('accepted'), (e) => console.log(e.code + ' ' + e.message));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toMatch(/^E_PERMISSION cannot read .*secret\.txt/);
  });

  it('more entries than maxEntries → E_USAGE', async () => {
    for (const n of ['a', 'b', 'c']) await make(`top/${n}`, n);
    await expectRejected(collectSources([path.join(root, 'top')], { maxEntries: 3 }), 'E_USAGE', /more than 3 files and folders/);
    expect((await collectSources([path.join(root, 'top')], { maxEntries: 4 })).sources).toHaveLength(4);
  });
});
