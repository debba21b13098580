/**
 * Child processes for tests (STACK services, nats-server, small scripts): started, watched until
 * ready, their output kept line by line in memory (tests scan it, e.g. for leaked secrets) and in
 * `test-artifacts/logs/` (people read it when a test fails), and always stopped — killed at the
 * latest when the test worker exits, so no run leaves processes behind holding ports.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';

import { artifactsDir } from './test-artifacts';

export interface StartProcessOptions {
  /** Shown in errors and used for the log file name. */
  name: string;
  command: string;
  args?: readonly string[];
  /** Added to (or, with `undefined`, removed from) the inherited environment. */
  env?: Record<string, string | undefined>;
  /** Start from an empty environment plus `env` instead of inheriting this process's. */
  cleanEnv?: boolean;
  cwd?: string;
  /** Polled until it answers 200. */
  readyUrl?: string;
  /** Default 60 s. */
  readyTimeoutMs?: number;
  /** Also print every line to this process's stderr (or set STACK_TEST_ECHO=1). */
  echo?: boolean;
}

export interface StopOptions {
  /** Default SIGTERM. */
  signal?: NodeJS.Signals;
  /** SIGKILL after this long; default 10 s. */
  timeoutMs?: number;
}

export interface ManagedProcess {
  name: string;
  pid: number;
  /** The file its output is appended to. */
  logFile: string;
  /** Every line written to stdout or stderr so far, in arrival order. */
  logs(): string[];
  /** Resolves with the first line (already written or still to come) that matches. */
  waitForLog(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Sends `signal`, waits, SIGKILLs (with its descendants) after the timeout; resolves with the exit code. */
  stop(options?: StopOptions): Promise<number | null>;
  /** SIGKILL to the process and everything it started. */
  kill(): Promise<number | null>;
  /** Exit code, or null when a signal ended it. Never rejects. */
  exited: Promise<number | null>;
  /** Whether it is still running. */
  running(): boolean;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Pids of every descendant of `pid` (Linux /proc); empty elsewhere. */
function descendants(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const e of entries) {
    try {
      // "pid (comm) state ppid …" — comm may hold spaces and parentheses, so parse after the last ')'.
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      // The process ended while we looked.
    }
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift() as number) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function killTree(child: ChildProcess): void {
  if (child.pid === undefined) return;
  const pids = [child.pid, ...descendants(child.pid)];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that forgot stop(), or a worker torn down early: kill what is left, synchronously.
  process.on('exit', () => {
    for (const child of live) killTree(child);
  });
}

function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET `url`; resolves with the status code, or undefined when nothing answered. */
export function probe(url: string, timeoutMs = 2000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = httpGet(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

export async function startProcess(options: StartProcessOptions): Promise<ManagedProcess> {
  installExitHook();
  const env: Record<string, string> = {};
  const base = options.cleanEnv ? { PATH: process.env.PATH } : process.env;
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const echo = options.echo ?? process.env.STACK_TEST_ECHO === '1';

  const child = spawn(options.command, [...(options.args ?? [])], { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid === undefined) {
    throw new Error(`${options.name}: could not start ${options.command}: ${(await spawnError).message}`);
  }
  const pid = child.pid;
  live.add(child);

  const logFile = join(artifactsDir('logs'), `${safeFileName(options.name)}.${pid}.log`);
  const file: WriteStream = createWriteStream(logFile, { flags: 'a' });
  file.on('error', () => undefined); // a full disk must not fail the test through its log
  file.write(`# ${options.name}: ${options.command} ${(options.args ?? []).join(' ')} (pid ${pid}, started ${new Date().toISOString()})\n`);

  const lines: string[] = [];
  const waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  const addLine = (line: string): void => {
    lines.push(line);
    file.write(`${line}\n`);
    if (echo) process.stderr.write(`[${options.name}] ${line}\n`);
    for (const w of [...waiters]) {
      if (w.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };
  const splitter = (): ((chunk: Buffer | null) => void) => {
    let partial = '';
    return (chunk) => {
      if (chunk === null) {
        if (partial) addLine(partial);
        partial = '';
        return;
      }
      const parts = (partial + chunk.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const p of parts) addLine(p.endsWith('\r') ? p.slice(0, -1) : p);
    };
  };
  const out = splitter();
  const err = splitter();
  child.stdout?.on('data', out);
  child.stderr?.on('data', err);
  child.stdout?.on('end', () => out(null));
  child.stderr?.on('end', () => err(null));

  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    // 'close' waits for stdio to drain, so logs() is complete when `exited` resolves.
    child.once('close', (code, signal) => {
      exitCode = code;
      live.delete(child);
      file.end(`# exited with ${signal ?? `code ${code}`} at ${new Date().toISOString()}\n`);
      resolve(code);
    });
  });
  const running = (): boolean => exitCode === undefined;
  const tail = (): string => {
    const last = lines.slice(-50);
    return last.length > 0 ? `last ${last.length} log lines (all in ${logFile}):\n${last.join('\n')}` : `it wrote nothing (log file ${logFile})`;
  };

  const stop = async ({ signal = 'SIGTERM', timeoutMs = 10_000 }: StopOptions = {}): Promise<number | null> => {
    if (!running()) return exited;
    try {
      child.kill(signal);
    } catch {
      // Gone between the check and the signal.
    }
    const timer = setTimeout(() => killTree(child), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  const managed: ManagedProcess = {
    name: options.name,
    pid,
    logFile,
    logs: () => [...lines],
    running,
    exited,
    stop,
    kill: () => {
      if (running()) killTree(child);
      return exited;
    },
    waitForLog(pattern, timeoutMs = 30_000) {
      const test = typeof pattern === 'string' ? (l: string) => l.includes(pattern) : (l: string) => pattern.test(l);
      const already = lines.find(test);
      if (already !== undefined) return Promise.resolve(already);
      return new Promise<string>((resolve, reject) => {
        const waiter = {
          test,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`${options.name}: no log line matching ${String(pattern)} within ${timeoutMs} ms; ${tail()}`));
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then((code) => {
          if (!waiters.has(waiter)) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          reject(new Error(`${options.name} exited (code ${code}) before logging ${String(pattern)}; ${tail()}`));
        });
      });
    },
  };

  if (options.readyUrl) {
    const readyUrl = options.readyUrl;
    const timeoutMs = options.readyTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    let lastStatus: number | undefined;
    for (;;) {
      if (!running()) {
        const code = await exited;
        throw new Error(`${options.name} exited (code ${code}) before ${readyUrl} answered 200; ${tail()}`);
      }
      lastStatus = await probe(readyUrl, 1000);
      if (lastStatus === 200) break;
      if (Date.now() > deadline) {
        await stop({ timeoutMs: 2000 });
        throw new Error(`${options.name}: ${readyUrl} did not answer 200 within ${timeoutMs} ms (last: ${lastStatus ?? 'no answer'}); ${tail()}`);
      }
      await Promise.race([sleep(100), exited]);
    }
  }
  return managed;
}
