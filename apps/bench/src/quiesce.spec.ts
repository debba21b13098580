import { spawn, type ChildProcess } from 'node:child_process';

import { QuietGate, type QuietProbe, cpuSeconds, processesNamed, threadCpuSeconds, waitQuiet } from './quiesce';

const linux = process.platform === 'linux';

/** A child that spins for `spinMs` (forever when undefined), then idles; resolves once it has started spinning. */
async function child(spinMs?: number): Promise<ChildProcess> {
  const script = `process.stdout.write('go\\n'); const end = Date.now() + ${spinMs ?? 1e12}; while (Date.now() < end); setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
  return c;
}

/**
 * A clock that moves only when waitQuiet sleeps, and processes whose CPU time is a function of it:
 * the waiting logic tested without a scheduler deciding the outcome (a spinning process on a loaded
 * machine can get less than a tenth of a core for a window).
 */
function virtual(cpuAt: (pid: number, ms: number) => number | undefined): QuietProbe & { sleeps: number[] } {
  let ms = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    cpu: (pid) => cpuAt(pid, ms),
    now: () => ms,
    sleep: async (step) => {
      sleeps.push(step);
      ms += step;
    },
  };
}

/** CPU seconds of a process busy at `share` of a core until `untilMs`, idle after. */
const busyUntil = (untilMs: number, share = 1) => (ms: number) => (Math.min(ms, untilMs) * share) / 1000;

describe('waitQuiet: the waiting logic', () => {
  it('tells when a process went quiet to within a step, not rounded up to a whole window', async () => {
    const probe = virtual((_pid, ms) => busyUntil(300)(ms));
    // (maxBusy below a step's share of the window: the window from 280 ms holds one busy step.)
    const r = await waitQuiet([1], { windowMs: 200, stepMs: 20, maxBusy: 0.05, probe });
    expect(r).toEqual({ quiet: true, supported: true, waitedMs: 300 });
    // It knew once the window from 300 ms had run its 200 ms, not a whole window later.
    expect(probe.now()).toBe(500);
    expect(new Set(probe.sleeps)).toEqual(new Set([20]));
  });

  it('allows a process up to maxBusy of a core, and waits for all of them', async () => {
    // Pid 1 is always at 3 % of a core, pid 2 busy for 1 s.
    const probe = virtual((pid, ms) => (pid === 1 ? (ms * 0.03) / 1000 : busyUntil(1000)(ms)));
    expect(await waitQuiet([1, 2], { windowMs: 200, stepMs: 20, maxBusy: 0.05, probe })).toEqual({ quiet: true, supported: true, waitedMs: 1000 });
    const stricter = virtual((_pid, ms) => (ms * 0.03) / 1000);
    const r = await waitQuiet([1], { windowMs: 200, stepMs: 20, maxBusy: 0.01, timeoutMs: 1000, probe: stricter });
    expect(r.quiet).toBe(false);
  });

  it('gives up at the timeout and says the process never went quiet', async () => {
    const probe = virtual((_pid, ms) => busyUntil(Infinity, 0.5)(ms));
    const r = await waitQuiet([1], { windowMs: 100, timeoutMs: 500, probe });
    expect(r).toEqual({ quiet: false, supported: true, waitedMs: expect.any(Number) });
    expect(r.waitedMs).toBeGreaterThan(500);
    expect(r.waitedMs).toBeLessThanOrEqual(520);
  });

  it('counts a process that exited as quiet, and waits for nothing where CPU time cannot be read', async () => {
    const exits = virtual((_pid, ms) => (ms < 400 ? ms / 1000 : undefined));
    expect(await waitQuiet([1], { windowMs: 100, stepMs: 20, probe: exits })).toEqual({ quiet: true, supported: true, waitedMs: expect.any(Number) });
    expect(exits.now()).toBeLessThanOrEqual(520);
    const unreadable = virtual(() => undefined);
    expect(await waitQuiet([1], { probe: unreadable })).toEqual({ quiet: true, supported: false, waitedMs: 0 });
    expect(unreadable.sleeps).toEqual([]);
  });

  it('QuietGate adds the time its measured process takes to go quiet to the run, and nothing without one', async () => {
    // Pid 1 idles; pid 2 spins for 1.5 s from the moment the third run measures.
    let spinFrom = Infinity;
    const probe = virtual((pid, ms) => (pid === 2 ? Math.max(0, Math.min(ms, spinFrom + 1500) - spinFrom) / 1000 : 0));
    const gate = new QuietGate([1], probe);
    const measured = { samplesNs: [1], wallNs: 1e6, errors: 0, truncated: false };
    expect(await gate.run(async () => measured)).toEqual({ run: measured });
    const { run, drainMs } = await gate.run(async () => measured, [1]);
    expect(drainMs).toBe(0);
    expect(run.wallNs).toBe(1e6);
    const after = await gate.run(async () => {
      spinFrom = probe.now();
      return measured;
    }, [2]);
    // The spin began when the run's measure did; the drain waits out all of it.
    expect(after.drainMs).toBe(1500);
    expect(after.run.wallNs).toBe(1e6 + 1500 * 1e6);
    expect(gate.warnings()).toEqual([]);
    const never = new QuietGate([3], virtual((_pid, ms) => ms / 1000));
    await never.run(async () => measured);
    expect(never.warnings()).toEqual([expect.stringContaining('still busy')]);
  });
});

(linux ? describe : describe.skip)('waitQuiet (Linux: reads /proc)', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });

  it('finds processes by their command name', async () => {
    const child = spawn('sleep', ['30']);
    try {
      await new Promise((r) => child.once('spawn', r));
      expect(processesNamed(['sleep'])).toContainEqual({ pid: child.pid, name: 'sleep' });
      expect(processesNamed(['no-such-command-here'])).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('reads a process’s CPU time, and nothing for a pid that does not exist', () => {
    expect(cpuSeconds(process.pid)).toBeGreaterThan(0);
    expect(cpuSeconds(2 ** 22 + 1)).toBeUndefined();
  });

  it('reads each thread’s CPU time: a worker spinning in a child shows on its own thread, not the main one', async () => {
    expect(threadCpuSeconds(2 ** 22 + 1)).toBeUndefined();
    expect(threadCpuSeconds(process.pid)!.has(process.pid)).toBe(true);
    const script = `const { Worker } = require('node:worker_threads'); new Worker('const end = Date.now() + 60000; while (Date.now() < end);', { eval: true }); setTimeout(() => process.stdout.write('go\\n'), 50); setInterval(() => {}, 1000);`;
    const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(c);
    await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
    // Until the worker has spun 0.3 s of CPU (on a loaded machine that takes longer than 0.3 s).
    let threads = threadCpuSeconds(c.pid!)!;
    const busiestOther = () => Math.max(...[...threads].filter(([tid]) => tid !== c.pid).map(([, s]) => s));
    for (const deadline = Date.now() + 15_000; busiestOther() < 0.3 && Date.now() < deadline; threads = threadCpuSeconds(c.pid!)!) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(busiestOther()).toBeGreaterThanOrEqual(0.3);
    expect(threads.get(c.pid!)!).toBeLessThan(0.3);
  });

  it('waits while a process is busy and returns once it has been idle for a whole window', async () => {
    const busy = await child(1000);
    children.push(busy);
    // A low maxBusy: a busy child starved by a loaded machine must not pass for quiet.
    const r = await waitQuiet([busy.pid!], { windowMs: 200, maxBusy: 0.02 });
    expect(r).toMatchObject({ quiet: true, supported: true });
    // It spun for a second from before the wait began: the quiet window cannot start much earlier.
    expect(r.waitedMs).toBeGreaterThanOrEqual(600);
  });

  it('returns at the first window for an idle process', async () => {
    const idle = await child(0);
    children.push(idle);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const r = await waitQuiet([idle.pid!], { windowMs: 200 });
    expect(r).toMatchObject({ quiet: true, waitedMs: expect.any(Number) });
    expect(r.waitedMs).toBeLessThan(100);
  });

});

