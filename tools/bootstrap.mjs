#!/usr/bin/env node
// The one entry point behind the README's commands, so a fresh clone needs nothing but Node:
//
//   npm start [-- args]   install if needed, build if needed, run STACK (all services, one process)
//   npm test  [-- args]   install, build, then lint → type check → jest; args go to jest
//                         (`npm test -- libs/shared/bus` runs only that folder's tests)
//   npm run bench [-- …]  install, build, run apps/bench
//   node tools/bootstrap.mjs install   only the install step (.ci/run uses it)
//
// Node built-ins only: nothing else is installed when it first runs.
// STACK_SKIP_CHECKS=1 makes `npm test` go straight to jest (no lint, no type check).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

import { build, DIST, ROOT } from './build.mjs';

const INSTALL_STAMP = join(ROOT, 'node_modules', '.stack-install-stamp');
const ARTIFACTS = join(ROOT, 'test-artifacts');
const JEST_RESULTS = join(ARTIFACTS, 'jest-results.json');
const MIN_NODE = [20, 19];

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code, s) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
const bold = (s) => paint('1', s);
const green = (s) => paint('32', s);
const red = (s) => paint('31', s);
const dim = (s) => paint('2', s);
const say = (s = '') => process.stdout.write(`${s}\n`);

class StepFailed extends Error {
  constructor(step, detail) {
    super(`${step}: ${detail}`);
    this.step = step;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------- children and signals

let current; // the child running right now, to forward signals to
let interrupted;
const lastForwarded = new Map();

/**
 * Ctrl-C in a terminal already reaches every process of the foreground group, the child
 * included; forwarding it again would make the child see two interrupts (and Nest treats a second
 * one as "die now"). So SIGINT is forwarded only when we are not on a terminal; SIGTERM (sent to
 * one pid by process managers and tests) always is, once per second at most.
 */
function onSignal(signal) {
  interrupted = signal;
  if (!current || current.exitCode !== null || current.signalCode !== null) {
    if (!current) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    return;
  }
  if (signal === 'SIGINT' && process.stdin.isTTY) return;
  const last = lastForwarded.get(signal) ?? 0;
  if (Date.now() - last < 1000) return;
  lastForwarded.set(signal, Date.now());
  current.kill(signal);
}
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/** Runs a command with its output captured; resolves with the exit status and that output. */
function runQuiet(command, args, { env } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    current = child;
    const output = [];
    child.stdout.on('data', (d) => output.push(d));
    child.stderr.on('data', (d) => output.push(d));
    child.on('error', (e) => {
      current = undefined;
      reject(e);
    });
    child.on('close', (code, signal) => {
      current = undefined;
      resolvePromise({ code: code ?? 128 + (SIGNAL_NUMBERS[signal] ?? 1), output: Buffer.concat(output).toString() });
    });
  });
}

/**
 * Nx's module-boundary lint rule reads the project graph from Nx's cache and, when there is none
 * (a fresh clone), skips itself with a mere warning: a boundary violation would pass. So the graph
 * is computed first, every time (a project may have been added since the last run).
 */
async function computeProjectGraph() {
  const { code, output } = await runQuiet(bin('nx'), ['show', 'projects'], { env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true' } });
  if (code !== 0) {
    process.stdout.write(output);
    return code;
  }
  return 0;
}

/** Runs a command with inherited stdio; resolves with the shell-style exit status. */
function run(command, args, { env } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: 'inherit', env: env ?? process.env });
    current = child;
    child.on('error', (e) => {
      current = undefined;
      reject(e.code === 'ENOENT' ? new Error(`${command} was not found on PATH`) : e);
    });
    child.on('exit', (code, signal) => {
      current = undefined;
      resolvePromise(code ?? 128 + (SIGNAL_NUMBERS[signal] ?? 1));
    });
  });
}

function bin(name) {
  const path = join(ROOT, 'node_modules', '.bin', name);
  if (!existsSync(path)) throw new StepFailed('setup', `node_modules/.bin/${name} is missing; delete node_modules and run again`);
  return path;
}

// ---------------------------------------------------------------- install

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Whether node_modules already holds exactly what package-lock.json asks for, judged from npm's
 * own record of the installed tree (node_modules/.package-lock.json). This spares a full
 * `npm ci` on a checkout that was installed by hand before the stamp existed.
 */
function installedTreeMatchesLock(lockPath) {
  const hiddenPath = join(ROOT, 'node_modules', '.package-lock.json');
  if (!existsSync(hiddenPath)) return false;
  try {
    const wanted = JSON.parse(readFileSync(lockPath, 'utf8')).packages ?? {};
    const have = JSON.parse(readFileSync(hiddenPath, 'utf8')).packages ?? {};
    for (const [path, entry] of Object.entries(wanted)) {
      if (path === '' || entry.link) continue;
      const installed = have[path];
      // Optional packages for other platforms are legitimately absent.
      if (!installed) {
        if (entry.optional || entry.devOptional || entry.peer) continue;
        return false;
      }
      if (entry.version && installed.version !== entry.version) return false;
    }
    return true;
  } catch {
    return false;
  }
}

async function ensureInstalled() {
  const lockPath = join(ROOT, 'package-lock.json');
  const hasLock = existsSync(lockPath);
  const wanted = sha256(hasLock ? lockPath : join(ROOT, 'package.json'));
  const hasModules = existsSync(join(ROOT, 'node_modules'));
  if (hasModules) {
    const stamp = existsSync(INSTALL_STAMP) ? readFileSync(INSTALL_STAMP, 'utf8').trim() : '';
    if (stamp === wanted) return;
    if (hasLock && installedTreeMatchesLock(lockPath)) {
      writeFileSync(INSTALL_STAMP, `${wanted}\n`);
      return;
    }
  }
  const why = hasModules ? 'package-lock.json changed since the last install' : 'first run';
  // npm's warnings (engine notes of transitive packages and the like) only confuse a first run; errors still show.
  const args = [hasLock ? 'ci' : 'install', '--no-audit', '--no-fund', '--loglevel=error'];
  say(bold(`▸ Installing dependencies: npm ${args[0]} (${why}; this takes a minute or two)…`));
  const started = Date.now();
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const code = await run(npm, args);
  if (code !== 0) throw new StepFailed('install', `npm ${args[0]} exited with code ${code}`);
  // `npm install` without a lock file has just written one: stamp what is now on disk.
  writeFileSync(INSTALL_STAMP, `${sha256(existsSync(lockPath) ? lockPath : join(ROOT, 'package.json'))}\n`);
  say(green(`✓ Dependencies installed in ${secs(started)}`));
}

async function ensureBuilt() {
  try {
    await build();
  } catch (e) {
    throw new StepFailed('build', e.message);
  }
}

function secs(started) {
  return `${((Date.now() - started) / 1000).toFixed(1)} s`;
}

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    throw new StepFailed('setup', `STACK needs Node ${MIN_NODE.join('.')} or newer; this is ${process.versions.node}`);
  }
}

// ---------------------------------------------------------------- commands

// The Node.js options of a STACK server process (the same in deploy/Dockerfile's CMD and in the
// test harness, STACK_NODE_OPTIONS of @stack/testing, which says why).
const STACK_NODE_OPTIONS = ['--max-semi-space-size=32'];

async function runEntry(label, entry, argv, nodeOptions = []) {
  const path = join(DIST, entry);
  if (!existsSync(path)) {
    throw new StepFailed(label, `${path} does not exist after the build; does ${entry.replace(/\.js$/, '.ts')} exist?`);
  }
  const code = await run(process.execPath, ['--enable-source-maps', ...nodeOptions, path, ...argv]);
  process.exit(code);
}

function tcpAnswers(host, port, timeoutMs = 1500) {
  return new Promise((resolvePromise) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The integration and e2e tiers use the real servers; say plainly when one is not there. */
async function missingServers() {
  const servers = [
    ['PostgreSQL', process.env.STACK_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', 5432],
    ['Redis', process.env.STACK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', 6379],
    ['NATS', process.env.STACK_TEST_NATS_URL ?? 'nats://127.0.0.1:4222', 4222],
  ];
  const missing = [];
  await Promise.all(
    servers.map(async ([name, url, defaultPort]) => {
      const u = new URL(url.split(',')[0]);
      const host = u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
      const port = Number(u.port || defaultPort);
      if (!(await tcpAnswers(host, port))) missing.push(`${name} (${host}:${port})`);
    }),
  );
  return missing;
}

async function test(argv) {
  const filtered = argv.length > 0;
  const skipChecks = process.env.STACK_SKIP_CHECKS === '1';
  const steps = [];
  if (!skipChecks) {
    steps.push({ name: 'lint', title: 'Lint (eslint, module boundaries)', before: computeProjectGraph, command: bin('eslint'), args: ['.'] });
    steps.push({ name: 'type check', title: 'Type check, tests included (tsc -p tsconfig.spec.json)', command: bin('tsc'), args: ['-p', 'tsconfig.spec.json', '--noEmit', '--pretty'] });
  }
  steps.push({
    name: 'jest',
    title: `Tests (jest: unit, integration, e2e${filtered ? `; only ${argv.join(' ')}` : ''})`,
    command: bin('jest'),
    args: ['--ci', '--maxWorkers=2', '--json', `--outputFile=${JEST_RESULTS}`, ...argv],
    // The build above is what the e2e harness runs; it must not rebuild in the middle of the run.
    env: { ...process.env, STACK_TEST_PREBUILT: '1' },
  });

  const missing = await missingServers();
  if (missing.length > 0) {
    const lines = [
      `Not answering on loopback: ${missing.join(', ')}.`,
      'Integration and end-to-end tests run against real servers. On Debian, `.ci/run` (as root) installs and starts them;',
      'or point STACK_TEST_POSTGRES_URL / STACK_TEST_REDIS_URL / STACK_TEST_NATS_URL at running ones.',
    ];
    if (!filtered) throw new StepFailed('servers', lines.join('\n  '));
    say(red(`! ${lines.join('\n  ')}`));
  }

  // Logs of the processes tests start land here; keep only the last run's.
  rmSync(join(ARTIFACTS, 'logs'), { recursive: true, force: true });
  rmSync(JEST_RESULTS, { force: true });

  const results = [];
  for (const [i, step] of steps.entries()) {
    say('');
    say(bold(`▸ [${i + 1}/${steps.length}] ${step.title}`));
    const started = Date.now();
    let code = step.before ? await step.before() : 0;
    if (code === 0 && !interrupted) code = await run(step.command, step.args, { env: step.env });
    results.push({ name: step.name, ok: code === 0, time: secs(started) });
    if (interrupted) throw new StepFailed(step.name, `interrupted by ${interrupted}`);
    if (code !== 0) {
      summary(results);
      const hint = step.name === 'jest' && existsSync(join(ARTIFACTS, 'logs')) ? `\n  Logs of the processes the tests started: test-artifacts/logs/` : '';
      throw new StepFailed(step.name, `exited with code ${code} (step ${i + 1} of ${steps.length}: ${step.title})${hint}`);
    }
  }
  summary(results);
  say(green(bold('✓ All checks passed.')));
  printCounts();
}

function summary(results) {
  say('');
  say(bold('Summary'));
  for (const r of results) say(`  ${r.ok ? green('✓') : red('✗')} ${r.name.padEnd(11)} ${dim(r.time)}`);
}

/** The last line of `npm test`: the test counts, plain, in the form CI systems read. */
function printCounts() {
  if (existsSync(JEST_RESULTS)) {
    try {
      const r = JSON.parse(readFileSync(JEST_RESULTS, 'utf8'));
      say(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + (r.numTodoTests ?? 0)} skipped`);
    } catch {
      /* no counts: the jest step did not finish */
    }
  }
}

async function main() {
  const [command, ...argv] = process.argv.slice(2);
  const usage = 'usage: node tools/bootstrap.mjs start|test|bench [args…]   (npm start / npm test / npm run bench)';
  if (!['start', 'test', 'bench', 'install'].includes(command)) {
    process.stderr.write(`${usage}\n`);
    process.exit(2);
  }
  checkNode();
  await ensureInstalled();
  if (command === 'install') return;
  await ensureBuilt();
  if (command === 'start') {
    say(bold('▸ Starting STACK (all six services in one process; Ctrl-C stops it)…'));
    await runEntry('start', 'apps/stack/src/main.js', argv, STACK_NODE_OPTIONS);
  } else if (command === 'bench') {
    await runEntry('bench', 'apps/bench/src/main.js', argv);
  } else {
    await test(argv);
  }
}

main().catch((e) => {
  const step = e instanceof StepFailed ? e.step : 'bootstrap';
  const detail = e instanceof StepFailed ? e.detail : (e?.stack ?? String(e));
  process.stderr.write(`\n${red(bold(`✗ Failed at step "${step}"`))}\n  ${detail}\n`);
  printCounts();
  process.exit(1);
});
