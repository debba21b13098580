#!/usr/bin/env node
// Compiles the workspace into dist/ so STACK runs as plain Node (no ts-node, no runtime loader).
//
//   node tools/build.mjs            compile when a source changed since the last build, then write shims
//   node tools/build.mjs --force    compile even when dist/ looks current
//
// What it does, in order:
//   1. Decides whether anything changed: a .ts (or asset) file under apps/ or libs/ newer than
//      dist/.build-stamp, a source file added or removed, or tsconfig*.json / package-lock.json /
//      this script changed. If not, it stops here in a few milliseconds.
//   2. Runs `tsc -p tsconfig.json` (outDir dist, rootDir "."), so apps/stack/src/main.ts becomes
//      dist/apps/stack/src/main.js, and copies non-TypeScript files found under src/ folders.
//   3. Writes one CommonJS shim per path alias of tsconfig.base.json
//      (dist/node_modules/@stack/<name>/index.js re-exporting the compiled lib), so compiled code
//      resolves `@stack/*` with Node's own resolution; third-party packages still come from
//      the repository's node_modules.
// Parallel callers (two terminals, several Jest workers) are serialised with a lock directory,
// and the second one finds the build current and does nothing.
// Plain Node built-ins only: it runs before anything else is known to work.
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.build-stamp');
const BUILD_INFO = join(DIST, '.tsbuildinfo');
const LOCK = join(DIST, '.build-lock');
const SOURCE_ROOTS = ['apps', 'libs'];
const SKIP_DIRS = new Set(['node_modules', 'dist', 'tmp', '.stack', 'coverage', 'test-artifacts']);
// Test files are not part of the runtime build (tsconfig.json excludes them), so editing one must not rebuild.
const TEST_FILE = /\.(spec|int-spec|e2e-spec)\.ts$|(^|\/)jest\.config\.ts$/;
const IGNORED_ASSETS = new Set(['project.json', '.eslintrc.json', 'README.md', '.gitkeep']);

/** Every input of the build: compiled sources and the assets copied next to them. */
function collectInputs() {
  const sources = [];
  const assets = [];
  const walk = (dir, inSrc) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const full = join(dir, e.name);
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name) && !e.name.startsWith('.')) walk(full, inSrc || e.name === 'src');
      } else if (e.isFile()) {
        const rel = relative(ROOT, full).split(sep).join('/');
        if (e.name.endsWith('.ts')) {
          if (!TEST_FILE.test(rel) && !e.name.endsWith('.d.ts')) sources.push(rel);
        } else if (inSrc && !IGNORED_ASSETS.has(e.name)) {
          assets.push(rel);
        }
      }
    }
  };
  for (const r of SOURCE_ROOTS) walk(join(ROOT, r), false);
  const config = readdirSync(ROOT).filter((f) => /^tsconfig.*\.json$/.test(f));
  config.push('package-lock.json', 'tools/build.mjs');
  return { sources: sources.sort(), assets: assets.sort(), config };
}

function mtimeMs(rel) {
  try {
    return statSync(join(ROOT, rel)).mtimeMs;
  } catch {
    return 0;
  }
}

/** Why a build is needed, or undefined when dist/ is current. */
function staleReason(inputs) {
  if (!existsSync(STAMP)) return existsSync(BUILD_INFO) ? 'the last build did not finish' : 'first build';
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(STAMP, 'utf8'));
  } catch {
    return 'the build stamp is unreadable';
  }
  const builtAt = statSync(STAMP).mtimeMs;
  const listed = [...inputs.sources, ...inputs.assets];
  if (!Array.isArray(stamp.files) || stamp.files.join('\n') !== listed.join('\n')) return 'files were added or removed';
  for (const rel of [...listed, ...inputs.config]) {
    if (mtimeMs(rel) > builtAt) return `${rel} changed`;
  }
  return undefined;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

/** A lock directory (mkdir is atomic); a lock left by a dead process is taken over. */
async function acquireLock() {
  mkdirSync(DIST, { recursive: true });
  const deadline = Date.now() + 15 * 60_000;
  let announced = false;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
    } catch {
      // The owner is between mkdir and writing its pid; look again shortly.
    }
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) {
      rmSync(LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`build lock ${LOCK} held by pid ${owner} for too long`);
    if (!announced) {
      process.stderr.write(`  waiting for another build (pid ${owner}) to finish…\n`);
      announced = true;
    }
    await sleep(250);
  }
}

function runTsc() {
  const tscBin = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tscBin)) {
    throw new Error('TypeScript is not installed (node_modules/typescript is missing). Run `npm ci` first, or use `npm start` / `npm test`, which install it.');
  }
  const args = [tscBin, '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', BUILD_INFO, '--pretty'];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new Error(signal ? `tsc was killed by ${signal}` : `tsc reported errors (exit code ${code}); see above`));
    });
  });
}

function copyAssets(assets) {
  for (const rel of assets) {
    const to = join(DIST, rel);
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(join(ROOT, rel), to);
  }
}

/** Compiled files of sources that no longer exist would still be loadable; remove them. */
function removeOrphans(previous, current) {
  const now = new Set(current);
  for (const rel of previous) {
    if (now.has(rel)) continue;
    const base = join(DIST, rel.replace(/\.ts$/, ''));
    for (const ext of rel.endsWith('.ts') ? ['.js', '.js.map', '.d.ts'] : ['']) rmSync(base + ext, { force: true });
  }
}

/**
 * Writes `content` to `file` unless it already holds exactly that, and then atomically (a
 * temporary file renamed over it). A STACK process may be loading dist/ while another `npm start`
 * or build runs: truncating a shim in place would let that process read an empty module — a
 * whole @stack lib silently missing its exports.
 */
export function replaceFile(file, content) {
  try {
    if (readFileSync(file, 'utf8') === content) return false;
  } catch {
    /* absent: write it */
  }
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, content);
  renameSync(temp, file);
  return true;
}

/** dist/node_modules/@stack/<name>/ → the compiled lib, one shim per tsconfig path alias. */
export function writeAliasShims() {
  const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.base.json'), 'utf8'));
  const paths = base.compilerOptions?.paths ?? {};
  const shimRoot = join(DIST, 'node_modules');
  const written = [];
  for (const [alias, targets] of Object.entries(paths)) {
    if (alias.includes('*')) throw new Error(`tsconfig.base.json: wildcard alias "${alias}" is not supported; name each lib`);
    const target = Array.isArray(targets) ? targets[0] : undefined;
    if (typeof target !== 'string' || !target.endsWith('.ts')) {
      throw new Error(`tsconfig.base.json: alias "${alias}" must point at one .ts file`);
    }
    const shimDir = join(shimRoot, ...alias.split('/'));
    const compiled = join(DIST, target.replace(/^\.\//, '').replace(/\.ts$/, '.js'));
    let rel = relative(shimDir, compiled).split(sep).join('/');
    if (!rel.startsWith('.')) rel = `./${rel}`;
    mkdirSync(shimDir, { recursive: true });
    replaceFile(
      join(shimDir, 'index.js'),
      `// Generated by tools/build.mjs: resolves "${alias}" to the compiled lib. Do not edit.\n` +
        `module.exports = require(${JSON.stringify(rel)});\n`,
    );
    replaceFile(join(shimDir, 'package.json'), `${JSON.stringify({ name: alias, private: true, main: 'index.js' }, null, 2)}\n`);
    written.push(alias);
  }
  return written;
}

/**
 * Builds when needed. Returns whether it compiled. Throws when tsc fails (its errors are
 * already on the terminal), leaving no stamp, so the next call compiles again.
 */
export async function build({ force = false, quiet = false } = {}) {
  const log = (line) => {
    if (!quiet) process.stdout.write(`${line}\n`);
  };
  const release = await acquireLock();
  try {
    const inputs = collectInputs();
    const reason = force ? 'forced' : staleReason(inputs);
    if (!reason) {
      writeAliasShims();
      log('✓ Build is up to date (dist/)');
      return false;
    }
    let previous = [];
    if (existsSync(STAMP)) {
      try {
        previous = JSON.parse(readFileSync(STAMP, 'utf8')).files ?? [];
      } catch {
        previous = [];
      }
      rmSync(STAMP, { force: true });
    } else {
      // Without a stamp we cannot trust that the outputs tsc's incremental state remembers still exist.
      rmSync(BUILD_INFO, { force: true });
    }
    const startedAt = Date.now();
    log(`▸ Compiling TypeScript into dist/ (${reason})…`);
    await runTsc();
    copyAssets(inputs.assets);
    const files = [...inputs.sources, ...inputs.assets];
    removeOrphans(previous, files);
    writeAliasShims();
    writeFileSync(STAMP, `${JSON.stringify({ builtAt: new Date(startedAt).toISOString(), files })}\n`);
    // The stamp carries the time the build started, so a file saved during the build triggers the next one.
    utimesSync(STAMP, new Date(startedAt), new Date(startedAt));
    log(`✓ Compiled in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    return true;
  } finally {
    release();
  }
}

const invokedDirectly = process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--force' && a !== '--quiet');
  if (unknown.length > 0) {
    process.stderr.write(`usage: node tools/build.mjs [--force] [--quiet]   (unknown: ${unknown.join(' ')})\n`);
    process.exit(2);
  }
  build({ force: args.includes('--force'), quiet: args.includes('--quiet') }).catch((e) => {
    process.stderr.write(`✗ Build failed: ${e.message}\n`);
    process.exit(1);
  });
}
