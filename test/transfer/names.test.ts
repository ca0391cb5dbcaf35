/**
 * nameProblem / printableName: a receiver takes one plain path component of at most 255 UTF-8
 * bytes, with no separator and no control character; anything it prints is escaped.
 */
import { describe, expect, it } from 'vitest';
import { nameProblem, printableName } from '../../src/transfer/names.js';
import { MAX_NAME_BYTES } from '../../src/protocol/index.js';

describe('nameProblem', () => {
  const accepted: Array<[string, string]> = [
    ['plain', 'report.pdf'],
    ['spaces', 'my holiday photo (1).jpg'],
    ['unicode and emoji', 'résumé 📄.pdf'],
    ['CJK', '日本語のファイル.txt'],
    ['dotfile', '.bashrc'],
    ['three dots', '...'],
    ['leading dash', '-rf'],
    ['255 ASCII bytes', 'a'.repeat(255)],
    ['255 bytes of 2-byte chars plus one ASCII', 'é'.repeat(127) + 'x'],
    ['255 bytes of 3-byte chars', '€'.repeat(85)],
    ['252 bytes of emoji plus 3 ASCII', '📄'.repeat(63) + 'abc'],
  ];
  it.each(accepted)('accepts %s', (_what, name) => {
    expect(Buffer.byteLength(name, 'utf8')).toBeLessThanOrEqual(MAX_NAME_BYTES);
    expect(nameProblem(name)).toBeNull();
  });

  it('the 255-byte fixtures really are 255 bytes', () => {
    expect(Buffer.byteLength('a'.repeat(255))).toBe(255);
    expect(Buffer.byteLength('é'.repeat(127) + 'x')).toBe(255);
    expect(Buffer.byteLength('€'.repeat(85))).toBe(255);
    expect(Buffer.byteLength('📄'.repeat(63) + 'abc')).toBe(255);
  });

  const refused: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['dot', '.', /not a file name/],
    ['dot dot', '..', /not a file name/],
    ['slash', 'a/b', /path separator/],
    ['parent traversal', '../x', /path separator/],
    ['leading slash', '/etc/passwd', /path separator/],
    ['backslash', 'a\\b', /path separator/],
    ['drive letter with backslash', 'C:\\x', /path separator/],
    ['NUL', 'a\u0000b', /control/],
    ['newline', 'a\nb', /control/],
    ['carriage return', 'a\rb', /control/],
    ['tab', 'a\tb', /control/],
    ['ANSI escape', '\u001b[2J', /control/],
    ['DEL', '\u007f', /control/],
    ['C1 NEL', '\u0085', /control/],
    ['C1 CSI', 'x\u009bJ', /control/],
    ['256 ASCII bytes', 'a'.repeat(256), /256 bytes long, the limit is 255/],
    ['128 × é = 256 bytes', 'é'.repeat(128), /256 bytes long, the limit is 255/],
    ['64 emoji = 256 bytes', '📄'.repeat(64), /256 bytes long, the limit is 255/],
  ];
  it.each(refused)('refuses %s', (_what, name, reason) => {
    const problem = nameProblem(name);
    expect(problem).not.toBeNull();
    expect(problem).toMatch(reason);
  });

  it('counts bytes, not characters: 128 × "é" is 128 characters but 256 bytes', () => {
    const name = 'é'.repeat(128);
    expect(name.length).toBe(128);
    expect(Buffer.byteLength(name)).toBe(256);
    expect(nameProblem(name)).toBe('the name is 256 bytes long, the limit is 255');
  });
});

describe('printableName', () => {
  it('leaves ordinary names alone', () => {
    expect(printableName('résumé 📄.pdf')).toBe('résumé 📄.pdf');
    expect(printableName('.bashrc')).toBe('.bashrc');
  });

  it('escapes C0, DEL and C1 control characters as \\xNN', () => {
    expect(printableName('a\u001b[2Jb')).toBe('a\\x1b[2Jb');
    expect(printableName('a\nb')).toBe('a\\x0ab');
    expect(printableName('a\u0000b')).toBe('a\\x00b');
    expect(printableName('\u007f')).toBe('\\x7f');
    expect(printableName('\u0085')).toBe('\\x85');
    expect(printableName('\u009f\u0001')).toBe('\\x9f\\x01');
  });

  it('escapes every control character, and its output has none left', () => {
    let all = '';
    for (let c = 0; c <= 0x1f; c++) all += String.fromCharCode(c);
    for (let c = 0x7f; c <= 0x9f; c++) all += String.fromCharCode(c);
    const out = printableName(all);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(out).toBe([...all].map((ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''));
    expect(nameProblem(out)).toMatch(/path separator/); // the backslashes of the escapes
  });
});
