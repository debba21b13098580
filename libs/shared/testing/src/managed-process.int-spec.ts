import { existsSync, readFileSync } from 'node:fs';

import { freePort } from './free-port';
import { probe, startProcess } from './managed-process';
import type { ManagedProcess } from './managed-process';

/**
 * A stand-in for a service: logs to both streams, answers /ready with 503 for a while and then
 * 200, says goodbye on SIGTERM (or ignores it when told to).
 */
const SERVICE_SCRIPT = `
const http = require('node:http');
const readyAfter = Number(process.env.READY_AFTER_MS ?? '300');
const started = Date.now();
console.log('booting ' + process.env.GREETING);
console.error('a line on stderr');
const server = http.createServer((req, res) => {
  res.statusCode = req.url === '/ready' && Date.now() - started >= readyAfter ? 200 : 503;
  res.end();
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
process.on('SIGTERM', () => {
  if (process.env.IGNORE_SIGTERM === '1') { console.log('ignoring SIGTERM'); return; }
  console.log('bye');
  server.close(() => process.exit(0));
});
if (process.env.CRASH === '1') setTimeout(() => { console.error('fatal: config is broken'); process.exit(3); }, 50);
if (process.env.SPAWN_GRANDCHILD === '1') {
  const g = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  console.log('grandchild ' + g.pid);
}
`;

describe('startProcess', () => {
  const started: ManagedProcess[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((p) => p.kill()));
  });

  async function service(env: Record<string, string | undefined>, readyTimeoutMs = 10_000): Promise<{ proc: ManagedProcess; port: number }> {
    const port = await freePort();
    const proc = await startProcess({
      name: 'fake-service',
      command: process.execPath,
      args: ['-e', SERVICE_SCRIPT],
      env: { PORT: String(port), GREETING: 'world', ...env },
      readyUrl: `http://127.0.0.1:${port}/ready`,
      readyTimeoutMs,
    });
    started.push(proc);
    return { proc, port };
  }

  it('resolves once readyUrl answers 200, with every output line captured in memory and in the log file', async () => {
    const t0 = Date.now();
    const { proc, port } = await service({ READY_AFTER_MS: '400' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(await probe(`http://127.0.0.1:${port}/ready`)).toBe(200);
    expect(proc.running()).toBe(true);
    expect(proc.logs()).toEqual(expect.arrayContaining(['booting world', 'a line on stderr', 'listening']));
    expect(proc.logFile).toMatch(/test-artifacts\/logs\/fake-service\.\d+\.log$/);
    expect(readFileSync(proc.logFile, 'utf8')).toContain('a line on stderr\n');

    expect(await proc.stop()).toBe(0);
    expect(proc.logs()).toContain('bye');
    expect(proc.running()).toBe(false);
    expect(await proc.exited).toBe(0);
  });

  it('removes a variable given as undefined from the inherited environment', async () => {
    process.env.STACK_TEST_SHOULD_NOT_LEAK = 'leaked';
    try {
      const proc = await startProcess({
        name: 'env-check',
        command: process.execPath,
        args: ['-e', 'console.log(String(process.env.STACK_TEST_SHOULD_NOT_LEAK) + " " + process.env.EXTRA)'],
        env: { STACK_TEST_SHOULD_NOT_LEAK: undefined, EXTRA: 'given' },
      });
      started.push(proc);
      expect(await proc.exited).toBe(0);
      expect(proc.logs()).toEqual(['undefined given']);
    } finally {
      delete process.env.STACK_TEST_SHOULD_NOT_LEAK;
    }
  });

  it('fails with the last log lines when the process exits before it is ready', async () => {
    await expect(service({ CRASH: '1', READY_AFTER_MS: '60000' })).rejects.toThrow(/exited \(code 3\)[\s\S]*fatal: config is broken/);
  });

  it('fails after readyTimeoutMs, and stops the process', async () => {
    const before = Date.now();
    let error: Error | undefined;
    try {
      await service({ READY_AFTER_MS: '60000' }, 800);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(/did not answer 200 within 800 ms \(last: 503\)[\s\S]*listening/);
    expect(Date.now() - before).toBeLessThan(5000);
    const pid = Number(/fake-service\.(\d+)\.log/.exec(error?.message ?? '')?.[1]);
    expect(Number.isInteger(pid)).toBe(true);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('SIGKILLs a process that ignores SIGTERM once the timeout passes', async () => {
    const { proc } = await service({ IGNORE_SIGTERM: '1', READY_AFTER_MS: '0' });
    const t0 = Date.now();
    expect(await proc.stop({ timeoutMs: 500 })).toBeNull();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    expect(proc.logs()).toContain('ignoring SIGTERM');
  });

  it('kill() takes the processes it started with it', async () => {
    const { proc } = await service({ SPAWN_GRANDCHILD: '1', READY_AFTER_MS: '0' });
    const line = await proc.waitForLog(/^grandchild \d+$/);
    const grandchild = Number(line.split(' ')[1]);
    expect(() => process.kill(grandchild, 0)).not.toThrow();
    expect(await proc.kill()).toBeNull();
    // The grandchild is reparented and reaped by init; give that a moment.
    for (let i = 0; i < 50 && existsSync(`/proc/${grandchild}`) && !readFileSync(`/proc/${grandchild}/stat`, 'utf8').includes(') Z '); i += 1) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const gone = !existsSync(`/proc/${grandchild}`) || readFileSync(`/proc/${grandchild}/stat`, 'utf8').includes(') Z ');
    expect(gone).toBe(true);
  });

  it('waitForLog fails with the log tail when the process exits first', async () => {
    const proc = await startProcess({ name: 'short-lived', command: process.execPath, args: ['-e', 'console.log("only line")'] });
    started.push(proc);
    await expect(proc.waitForLog('never printed', 5000)).rejects.toThrow(/exited \(code 0\)[\s\S]*only line/);
  });

  it('reports a command that does not exist', async () => {
    await expect(startProcess({ name: 'missing', command: '/nonexistent/binary' })).rejects.toThrow(/could not start \/nonexistent\/binary: .*ENOENT/);
  });
});
