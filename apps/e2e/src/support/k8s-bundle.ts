/**
 * The production bundle of deploy/Dockerfile assembled without a Docker engine: the runtime
 * stage's /app (package.json, production node_modules from `npm ci --omit=dev`, dist/) in a
 * temporary directory, and the image's command started from it as a non-root user.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { repoRoot } from '@stack/testing';

/** Build leftovers that never reach an image (the lock of a concurrent build). */
const ALWAYS_SKIPPED = ['.build-lock'];

export interface CommandResult {
  code: number | null;
  output: string;
}

export function runCommand(command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs: number; uid?: number; gid?: number }): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], uid: options.uid, gid: options.gid });
    const chunks: string[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d.toString()));
    child.stderr.on('data', (d: Buffer) => chunks.push(d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: chunks.join('') });
    });
  });
}

/**
 * Copies the image's /app into a fresh directory and installs production dependencies there.
 * `removedFromDist`: the dist/-relative paths the Dockerfile's build stage deletes.
 */
export async function assembleBundle(npmCiArgs: readonly string[], removedFromDist: readonly string[]): Promise<string> {
  const root = repoRoot();
  const dir = mkdtempSync(join(tmpdir(), 'stack-bundle-'));
  chmodSync(dir, 0o755);
  cpSync(join(root, 'package.json'), join(dir, 'package.json'));
  cpSync(join(root, 'package-lock.json'), join(dir, 'package-lock.json'));
  // --ignore-scripts: no production dependency needs one today (the image runs them; see the Dockerfile's deps stage).
  const install = await runCommand('npm', [...npmCiArgs, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, timeoutMs: 300_000 });
  if (install.code !== 0) throw new Error(`npm ${npmCiArgs.join(' ')} failed in ${dir}:\n${install.output.slice(-4000)}`);
  rmSync(join(dir, 'package-lock.json'));
  const skipped = [...ALWAYS_SKIPPED, ...removedFromDist];
  cpSync(join(root, 'dist'), join(dir, 'dist'), {
    recursive: true,
    filter: (src) => {
      const rel = relative(join(root, 'dist'), src);
      return !skipped.some((s) => rel === s || rel.startsWith(`${s}/`));
    },
  });
  return dir;
}

/** Every file and directory under `dir` loses its write bits (as a read-only root filesystem would). */
export function makeReadOnly(dir: string): void {
  const walk = (p: string): void => {
    const st = statSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    chmodSync(p, st.mode & 0o555);
  };
  walk(dir);
}

export function makeWritable(dir: string): void {
  const walk = (p: string): void => {
    const st = statSync(p);
    chmodSync(p, st.mode | 0o200);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
  };
  walk(dir);
}

export interface BundleProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

export function startBundle(dir: string, argv: readonly string[], env: NodeJS.ProcessEnv, user?: { uid: number; gid: number }): BundleProcess {
  const [command, ...args] = argv;
  // `node` is the image's PATH lookup; here it is the Node running the tests.
  const child = spawn(command === 'node' ? process.execPath : command, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], uid: user?.uid, gid: user?.gid });
  const chunks: string[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => chunks.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, output: () => chunks.join(''), exited };
}
