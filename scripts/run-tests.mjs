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

/** The newest modification time of any file under `dir` (0 when it does not exist). */
function newest(dir) {
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
    const full = path.join(dir, entry.name);
    const time = entry.isDirectory() ? newest(full) : fs.statSync(full).mtimeMs;
    return Math.max(latest, time);
  }, 0);
}

// The browser tests drive the built web app: build it when it is missing or older than its
// sources (CI builds it just before; on a laptop `npm test` alone must be enough).
const builtAt = fs.existsSync('dist/web/index.html')
  ? fs.statSync('dist/web/index.html').mtimeMs
  : 0;
if (builtAt < newest('web') || builtAt < newest('src/domain')) {
  console.log('# building the web app (dist/web) for the browser tests');
  const build = spawnSync('npm', ['run', '--silent', 'build:web'], { stdio: 'inherit' });
  if (build.status !== 0) process.exit(build.status ?? 1);
}

// `npm test` runs everything under test/ except the fault suite (test/faults/, `npm run
// test:faults`: crash loops, strace, I/O faults, fuzzing and floods, slower and run on its own).
// Arguments name files or folders to run instead.
const only = process.argv.slice(2);
const files =
  only.length > 0
    ? only.flatMap((arg) => (fs.statSync(arg).isDirectory() ? find(arg).sort() : [arg]))
    : find('test')
        .filter((file) => !file.startsWith(path.join('test', 'faults') + path.sep))
        .sort();
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
