// Runs every test file with Node's built-in runner (Node 20 does not expand globs itself).
// When stdout is not a terminal (CI) the runner prints TAP, ending in "# pass N" / "# fail N".
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function find(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return find(full);
    return entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

const only = process.argv.slice(2);
const files = only.length > 0 ? only : find('test').sort();
// Two files at a time: most of a test waits on fsync or PostgreSQL, so two overlap well even on
// a two-core machine (the runner's default is one file per core minus one).
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', ...files],
  {
    stdio: 'inherit',
  },
);
process.exit(result.status ?? 1);
