/** This build's name and version, as sent in HELLO and WELCOME and printed by --version. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package.json above this file, from src/ (tests) or dist/src/ (the built CLI). */
function readVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sockxfer' && pkg.version) return pkg.version;
    } catch {
      // not here: look one folder up
    }
  }
  return '0.0.0';
}

export const VERSION: string = readVersion();
export const SOFTWARE = `sockxfer/${VERSION}`;
