/**
 * The runtime's own promises, on the real Postgres, NATS and Redis: a process drains on
 * shutdown — it stops accepting, reports itself not ready, lets in-flight requests finish up
 * to the deadline and cuts what is left after it.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';

import { Controller, Get, Module, Query } from '@nestjs/common';

import { TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';

import type { ServiceDefinition } from './service-definition';
import { startStack, type RunningStack } from './start-stack';

@Controller('v1/audit')
class SlowController {
  @Get('slow')
  async slow(@Query('ms') ms: string): Promise<{ waited: number }> {
    await new Promise((r) => setTimeout(r, Number(ms)));
    return { waited: Number(ms) };
  }
}

@Module({ controllers: [SlowController] })
class SlowAuditModule {}

const slowAudit: ServiceDefinition = { service: 'audit', module: SlowAuditModule, entities: [], migrations: [] };

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('startStack (one service, real servers)', () => {
  let db: TestDatabase;
  let stack: RunningStack | undefined;

  const start = async (extra: Record<string, string> = {}) =>
    startStack({
      available: [slowAudit],
      env: {
        STACK_SERVICES: 'audit',
        DATABASE_URL: db.url,
        NATS_URL: TEST_NATS_URL,
        REDIS_URL: TEST_REDIS_URL,
        STACK_BUS_PREFIX: uniqueName('rt'),
        STACK_INTERNAL_SECRET: randomBytes(32).toString('base64'),
        STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
        PORT: '0',
        LOG_LEVEL: 'warn',
        ...extra,
      },
    });

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('lets an in-flight request finish, refuses new ones and reports draining', async () => {
    stack = await start({ STACK_SHUTDOWN_TIMEOUT_MS: '5000' });
    const inflight = get(`${stack.url}/v1/audit/slow?ms=800`);
    await new Promise((r) => setTimeout(r, 100));
    const stopping = stack.stop('test');
    await new Promise((r) => setTimeout(r, 50));
    await expect(get(`${stack.url}/readyz`)).rejects.toThrow(/ECONNREFUSED|ECONNRESET|socket hang up/);
    const done = await inflight;
    expect(done).toEqual({ status: 200, body: JSON.stringify({ waited: 800 }) });
    await stopping;
  });

  it('cuts what is still running at the deadline', async () => {
    stack = await start({ STACK_SHUTDOWN_TIMEOUT_MS: '300' });
    const inflight = get(`${stack.url}/v1/audit/slow?ms=5000`).then(
      (r) => r,
      (err: Error) => err,
    );
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await stack.stop('test');
    expect(Date.now() - t0).toBeLessThan(3000);
    const outcome = await inflight;
    // The connection is closed under the request: the client sees it hang up.
    expect(outcome).toMatchObject({ message: expect.stringMatching(/socket hang up|ECONNRESET/) });
  });

  it('answers unknown paths and bad JSON in the error envelope', async () => {
    stack = await start();
    const missing = await get(`${stack.url}/v1/audit/nothing-here`);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
    const bad = await fetch(`${stack.url}/v1/audit/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"broken":' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: { code: 'INVALID_REQUEST', message: 'request body is not valid JSON' } });
    const big = await fetch(`${stack.url}/v1/audit/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ x: 'y'.repeat(3 * 1024 * 1024) }) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('reports not ready while a dependency is down, with the failing check named', async () => {
    stack = await start();
    const ok = await get(`${stack.url}/readyz`);
    expect(ok.status).toBe(200);
    await stack.dataSources.get('audit')!.destroy();
    const down = await get(`${stack.url}/readyz`);
    expect(down.status).toBe(503);
    const body = JSON.parse(down.body) as { checks: Record<string, { ok: boolean }> };
    expect(body.checks['database:audit']!.ok).toBe(false);
    expect(body.checks.bus!.ok).toBe(true);
  });
});
