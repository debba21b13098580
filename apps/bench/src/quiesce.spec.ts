import { spawn, type ChildProcess } from 'node:child_process';

import { QuietGate, cpuSeconds, processesNamed, threadCpuSeconds, waitQuiet } from './quiesce';

const linux = process.platform === 'linux';

/** A child that spins for `spinMs` (forever when undefined), then idles; resolves once it has started spinning. */
async function child(spinMs?: number): Promise<ChildProcess> {
  const script = `process.stdout.write('go\\n'); const end = Date.now() + ${spinMs ?? 1e12}; while (Date.now() < end); setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
  return c;
}

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
    const r = await waitQuiet([busy.pid!], { windowMs: 200 });
    expect(r).toMatchObject({ quiet: true, supported: true });
    // It spun for a second from before the wait began: the quiet window cannot start much earlier.
    expect(r.waitedMs).toBeGreaterThanOrEqual(600);
  });

  it('tells when a process went quiet to within a step, not rounded up to a whole window', async () => {
    const busy = await child(300);
    children.push(busy);
    const r = await waitQuiet([busy.pid!], { windowMs: 200, stepMs: 20 });
    expect(r).toMatchObject({ quiet: true, supported: true });
    // It spun for 300 ms from before the wait began. Windows that did not slide would say 400 ms.
    expect(r.waitedMs).toBeGreaterThan(150);
    expect(r.waitedMs).toBeLessThan(380);
  });

  it('returns at the first window for an idle process', async () => {
    const idle = await child(0);
    children.push(idle);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const r = await waitQuiet([idle.pid!], { windowMs: 200 });
    expect(r).toMatchObject({ quiet: true, waitedMs: expect.any(Number) });
    expect(r.waitedMs).toBeLessThan(100);
  });

  it('gives up at the timeout and says the process never went quiet', async () => {
    const spinning = await child();
    children.push(spinning);
    const r = await waitQuiet([spinning.pid!], { windowMs: 100, timeoutMs: 500 });
    expect(r.quiet).toBe(false);
    expect(r.waitedMs).toBeGreaterThanOrEqual(500);
  });

  it('QuietGate adds the time its measured process takes to go quiet to the run, and nothing without one', async () => {
    const idle = await child(0);
    children.push(idle);
    const gate = new QuietGate([idle.pid!]);
    const measured = { samplesNs: [1], wallNs: 1e6, errors: 0, truncated: false };
    expect(await gate.run(async () => measured)).toEqual({ run: measured });
    let busy: ChildProcess | undefined;
    const { run, drainMs } = await gate.run(async () => {
      busy = await child(1500);
      children.push(busy);
      return measured;
    }, [idle.pid!]);
    expect(drainMs).toBeLessThan(100);
    expect(run.wallNs).toBeCloseTo(1e6 + drainMs! * 1e6);
    const after = await gate.run(async () => measured, [busy!.pid!]);
    expect(after.drainMs).toBeGreaterThan(300);
    expect(after.run.wallNs).toBeCloseTo(1e6 + after.drainMs! * 1e6);
    expect(gate.warnings()).toEqual([]);
  });
});

