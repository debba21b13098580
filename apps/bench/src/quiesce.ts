/**
 * Waiting for a process to finish the work a run left it. STACK answers a call before all of
 * its consequences are done: the outbox relay publishes the call's events, the audit log
 * appends its entries. A run that ends leaves that backlog behind, and on a 2-core machine the
 * backlog of one process slows whatever runs next. So a benchmark waits for every process under
 * test to go quiet before a run, and counts the time the measured process takes to go quiet
 * after it as part of the run: a throughput that leaves a growing backlog behind is not one the
 * process can sustain.
 *
 * Quiet: the process (all its threads: the PGlite worker, GC) used less than `maxBusy` of one
 * core over a window of `windowMs`. Read from /proc, so Linux only; elsewhere nothing is waited
 * for and `supported` is false.
 */
import { readdirSync, readFileSync } from 'node:fs';

import type { RunResult } from './stats';

/** Linux reports CPU time in clock ticks, 100 a second on every platform Node runs on. */
const ticksPerSecond = 100;

/** User + system CPU seconds from a /proc `stat` file (a process's or a thread's); throws if it cannot be read. */
function statCpuSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // "pid (comm) state …": comm may hold spaces and parentheses, so count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** CPU seconds (user + system, all threads) a process has used, or undefined where /proc cannot tell. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    return statCpuSeconds(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
}

/**
 * The processes on this machine whose command name (/proc/<pid>/comm) is one of `names`, e.g. the
 * shared NATS, Postgres and Redis servers a distributed run also makes work. Empty where /proc
 * cannot tell.
 */
export function processesNamed(names: readonly string[]): Array<{ pid: number; name: string }> {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: Array<{ pid: number; name: string }> = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const name = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (names.includes(name)) out.push({ pid: Number(entry), name });
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return out;
}

/**
 * CPU seconds (user + system) of each thread of a process, by thread id (the main thread's is the
 * process id), or undefined where /proc cannot tell. Threads that ended are not listed.
 */
export function threadCpuSeconds(pid: number): Map<number, number> | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const out = new Map<number, number>();
  for (const tid of tids) {
    try {
      out.set(Number(tid), statCpuSeconds(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** Resident memory of a process, MiB (Linux), or undefined. */
export function rssMiB(pid: number): number | undefined {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

export interface QuietOptions {
  /** Default 200 ms: two clock ticks at least, so one busy tick cannot pass for quiet. */
  windowMs?: number;
  /**
   * How often CPU time is read, default 20 ms: the quiet window slides by this much, so the time
   * a process takes to go quiet is known to within a step, not rounded up to a whole window.
   */
  stepMs?: number;
  /** Share of one core; default 0.1. */
  maxBusy?: number;
  /** Give up after this long; default 20 s. */
  timeoutMs?: number;
  /**
   * Where CPU time and time come from: by default `cpuSeconds` (/proc) and the real clock. Tests of
   * the waiting logic give their own, so no scheduler decides their outcome.
   */
  probe?: QuietProbe;
}

export interface QuietProbe {
  /** A process's CPU seconds so far; undefined when it cannot be read. */
  cpu(pid: number): number | undefined;
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realProbe: QuietProbe = {
  cpu: cpuSeconds,
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface QuietResult {
  /** From the call until the quiet window began. */
  waitedMs: number;
  /** False when the processes were still busy at the timeout. */
  quiet: boolean;
  /** False where process CPU time cannot be read (nothing was waited for). */
  supported: boolean;
}

/** Resolves once every one of `pids` has been quiet for a whole window; says when that window began. */
export async function waitQuiet(pids: readonly number[], options: QuietOptions = {}): Promise<QuietResult> {
  const windowMs = options.windowMs ?? 200;
  const stepMs = Math.max(1, Math.min(options.stepMs ?? 20, windowMs));
  const maxBusy = options.maxBusy ?? 0.1;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const probe = options.probe ?? realProbe;
  const started = probe.now();
  const read = () => ({ at: probe.now(), cpu: pids.map((pid) => probe.cpu(pid)) });
  const first = read();
  if (first.cpu.some((s) => s === undefined)) return { waitedMs: 0, quiet: true, supported: false };
  // Readings from the earliest moment that could still begin a quiet window, oldest first.
  const readings = [first];
  for (;;) {
    await probe.sleep(stepMs);
    const last = read();
    readings.push(last);
    // Every window that now spans at least windowMs, earliest start first.
    while (readings.length > 1 && last.at - readings[0]!.at >= windowMs) {
      const from = readings[0]!;
      const elapsedS = (last.at - from.at) / 1000;
      // A process that exited is quiet.
      const busiest = Math.max(...last.cpu.map((s, i) => (s === undefined || from.cpu[i] === undefined ? 0 : (s - from.cpu[i]!) / elapsedS)));
      if (busiest < maxBusy) return { waitedMs: Math.max(0, from.at - started), quiet: true, supported: true };
      readings.shift();
    }
    if (last.at - started > timeoutMs) return { waitedMs: last.at - started, quiet: false, supported: true };
  }
}

/**
 * How a benchmark runs between quiet spells: before each run every process in `all` goes quiet;
 * after it, the processes the run measured (`own`, if given) go quiet again and that time is added
 * to the run's wall time. It keeps count of what went wrong for `warnings()`.
 */
export class QuietGate {
  private unquiet = 0;
  private unsupported = false;

  /** `probe`: where CPU time and time come from (tests); /proc and the real clock by default. */
  constructor(
    private readonly all: readonly number[],
    private readonly probe?: QuietProbe,
  ) {}

  /** The run, its wall time including the drain of `own`, and that drain (undefined when not waited for). */
  async run(measure: () => Promise<RunResult>, own?: readonly number[]): Promise<{ run: RunResult; drainMs?: number }> {
    const before = await waitQuiet(this.all, { probe: this.probe });
    if (!before.quiet) this.unquiet++;
    if (!before.supported) this.unsupported = true;
    const run = await measure();
    if (!own || own.length === 0) return { run };
    const drain = await waitQuiet(own, { probe: this.probe });
    if (!drain.quiet) this.unquiet++;
    return { run: { ...run, wallNs: run.wallNs + drain.waitedMs * 1e6 }, drainMs: drain.waitedMs };
  }

  /** Lines for the report: processes that never went quiet, or no /proc to tell. */
  warnings(): string[] {
    const lines: string[] = [];
    if (this.unquiet) lines.push(`Warning: ${this.unquiet} time(s) a process was still busy after 20 s of waiting; figures are unreliable.`);
    if (this.unsupported) lines.push('Warning: process CPU time cannot be read here (no /proc): runs did not wait for quiet, and backlogs are not counted.');
    return lines;
  }
}
