/**
 * The runtime's own promises, on the real Postgres, NATS and Redis: a process drains on
 * shutdown — it stops accepting, reports itself not ready, lets in-flight requests finish up
 * to the deadline and cuts what is left after it.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';

import type { IncomingMessage } from 'node:http';

import type { Server, ServerResponse } from 'node:http';

import { Body, Controller, Get, HttpCode, Module, Post, Query, Req, Res } from '@nestjs/common';

import { StackError } from '@stack/contracts';
import { currentRequestContext } from '@stack/observability';
import { TEST_NATS_URL, TEST_REDIS_URL, createTestDatabase, uniqueName, type TestDatabase } from '@stack/testing';

import { EnvelopeCipher, Keyring, type SealedRow, type SealedSecret } from '@stack/security';

import type { ServiceDefinition } from './service-definition';
import { readJsonBody, readRawBody } from './fast-routes';
import { HTTP_TIMEOUTS, startStack, type HttpTimeouts, type RunningStack } from './start-stack';

@Controller('v1/audit')
class SlowController {
  @Get('slow')
  async slow(@Query('ms') ms: string): Promise<{ waited: number }> {
    await new Promise((r) => setTimeout(r, Number(ms)));
    return { waited: Number(ms) };
  }

  /** An answer that streams for `ms`, a chunk every 100 ms, as the SSE audit follow and /mcp do. */
  @Get('stream')
  stream(@Query('ms') ms: string, @Res() res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const started = Date.now();
    const tick = setInterval(() => {
      res.write(`data: ${Date.now() - started}\n\n`);
      if (Date.now() - started >= Number(ms)) {
        clearInterval(tick);
        res.end('data: end\n\n');
      }
    }, 100);
    res.once('close', () => clearInterval(tick));
  }

  @Post('context')
  @HttpCode(200)
  context(@Body() body: unknown): { request_id?: string; trace_id?: string; size: number } {
    const ctx = currentRequestContext();
    return { request_id: ctx?.requestId, trace_id: ctx?.traceId, size: JSON.stringify(body).length };
  }
}

/** A route that reads its own body (a rawBodyPaths entry), as the proxy and /mcp do. */
@Controller('v1/audit/raw')
class RawBodyController {
  @Post()
  @HttpCode(200)
  async raw(@Req() req: IncomingMessage): Promise<{ raw: string }> {
    return { raw: (await readRawBody(req, 1024)).toString('utf8') };
  }
}

@Module({ controllers: [SlowController, RawBodyController] })
class SlowAuditModule {}

/** A table of sealed values held in memory: what the background re-wrap sees of a service's table. */
const sealedRows: SealedRow[] = [];
const memoryTable = {
  wrappedByOtherKeys: async (kid: string, limit: number) => sealedRows.filter((r) => r.secret.kid !== kid).slice(0, limit),
  swapSecret: async (id: string, before: SealedSecret, after: SealedSecret) => {
    const row = sealedRows.find((r) => r.id === id && r.secret === before);
    if (row) row.secret = after;
    return row !== undefined;
  },
  countByKey: async () => Object.fromEntries([...new Set(sealedRows.map((r) => r.secret.kid))].map((k) => [k, sealedRows.filter((r) => r.secret.kid === k).length])),
};

/** A hot route on the lean lane; `?fail=1` throws a StackError, `?crash=1` a plain error. */
const slowAudit: ServiceDefinition = {
  service: 'audit',
  module: SlowAuditModule,
  entities: [],
  migrations: [],
  rawBodyPaths: ['/v1/audit/raw'],
  sealedValues: () => [{ label: 'test value(s)', store: memoryTable }],
  fastRoutes: () => [
    {
      method: 'POST',
      path: '/v1/audit/items/:id/echo',
      handle: async (req, _res, { params, query }) => ({ status: 200, body: { params, wait: query.get('wait'), body: (await readJsonBody(req, 1024)) ?? null } }),
    },
    {
      method: 'POST',
      path: '/v1/audit/fast',
      handle: async (req) => {
        if (req.url?.includes('fail=1')) throw new StackError('RATE_LIMITED', 'slow down', { retry_after_s: 7 });
        if (req.url?.includes('crash=1')) throw new Error('boom: not for the caller');
        // Express never saw this request: its helpers are absent.
        return { status: 201, body: { lane: 'fast', express: 'path' in req, request_id: currentRequestContext()?.requestId } };
      },
    },
  ],
};

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

  const start = async (extra: Record<string, string> = {}, httpTimeouts?: Partial<HttpTimeouts>) =>
    startStack({
      available: [slowAudit],
      httpTimeouts,
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
    // Anyone reaching the port may ask: no error text (it names hosts and addresses), no instance.
    expect(body).toEqual({ status: 'not_ready', services: ['audit'], checks: { bus: { ok: true }, cache: { ok: true }, 'database:audit': { ok: false } } });
    expect(down.body).not.toContain(stack.config.instanceId);
  });

  it('answers ?peers=1 from one shared sweep, paced, without error text', async () => {
    stack = await start();
    const sweeps = async () => {
      const text = await (await fetch(`${stack!.url}/metrics`)).text();
      const line = text.split('\n').find((l) => /^stack_bus_handled_total\{[^}]*subject="[^"]*ping_peers[^"]*"[^}]*outcome="ok"/.test(l));
      return line ? Number(line.split(' ').pop()) : 0;
    };
    // Fifty callers at once, then fifty more one after the other: a handful of sweeps, not a hundred.
    const t0 = Date.now();
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(`${stack!.url}/readyz?peers=1`)));
    for (let i = 0; i < 50; i++) answers.push(await get(`${stack.url}/readyz?peers=1`));
    const swept = await sweeps();
    expect(swept).toBeGreaterThanOrEqual(1);
    // A burst of three, then one a second.
    expect(swept).toBeLessThanOrEqual(3 + Math.ceil((Date.now() - t0) / 1000));
    const body = JSON.parse(answers.at(-1)!.body) as { peers: { service: string; ok: boolean; peers: { service: string; ok: boolean }[] }[] };
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // Audit runs alone here: it answers, and reaches none of the five others.
    expect(body.peers).toEqual([{ service: 'audit', ok: true, peers: expect.any(Array) }]);
    expect(body.peers[0]!.peers.map((p) => [p.service, p.ok]).sort()).toEqual(['auth', 'credential-proxy', 'mcp-gateway', 'passport', 'skill-runner'].map((s) => [s, false]));
    expect(answers.at(-1)!.body).not.toMatch(/error|instance/);
  });

  it('bounds how long a client may take to send a request, not how long an answer may stream', async () => {
    stack = await start({}, { headersTimeout: 500, requestTimeout: 1000, keepAliveTimeout: 3000, connectionsCheckingInterval: 100 });
    const { port } = new URL(stack.url);
    /** Writes `chunks` one by one every `everyMs` (on the same connection) and reports what came back and when the server closed it. */
    const trickle = (chunks: string[], everyMs: number) =>
      new Promise<{ got: string; closedAfterMs: number }>((resolve, reject) => {
        const t0 = Date.now();
        let got = '';
        const socket = connect(Number(port), '127.0.0.1');
        const timer = setInterval(() => (chunks.length ? socket.write(chunks.shift()!) : undefined), everyMs);
        socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
        const giveUp = setTimeout(() => socket.destroy(), 6000);
        socket.on('close', () => {
          clearInterval(timer);
          clearTimeout(giveUp);
          resolve({ got, closedAfterMs: Date.now() - t0 });
        });
        socket.on('error', reject);
      });
    // Headers dribbled out a byte at a time: cut at the headers timeout.
    const headers = await trickle([...'GET /v1/audit/slow?ms=1 HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n'], 100);
    expect(headers.got).toMatch(/^HTTP\/1\.1 408/);
    expect(headers.closedAfterMs).toBeLessThan(2000);
    // A body dribbled out: cut at the request timeout.
    const body = await trickle(['POST /v1/audit/context HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n', ...'{"a":"'.concat('x'.repeat(190), '"}')], 100);
    expect(body.got).toMatch(/^HTTP\/1\.1 408/);
    expect(body.closedAfterMs).toBeLessThan(2500);
    // Once the request is in, neither a slow answer nor a long stream is cut.
    expect(await get(`${stack.url}/v1/audit/slow?ms=1800`)).toEqual({ status: 200, body: JSON.stringify({ waited: 1800 }) });
    const streamed = await get(`${stack.url}/v1/audit/stream?ms=2500`);
    expect(streamed.status).toBe(200);
    expect(streamed.body).toMatch(/data: end\n\n$/);
    // An idle kept-alive connection lives past the headers and request timeouts (until keepAliveTimeout).
    const twice = await trickle(['GET /v1/audit/slow?ms=1 HTTP/1.1\r\nHost: x\r\n\r\n', '', '', '', '', '', '', '', '', '', '', '', '', '', 'GET /v1/audit/slow?ms=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], 100);
    expect(twice.got.match(/HTTP\/1\.1 200/g)).toHaveLength(2);
  });

  it('sets the HTTP timeouts on purpose, not to Node\'s defaults', async () => {
    stack = await start();
    const server = stack.app.getHttpServer() as Server;
    expect({ headers: server.headersTimeout, request: server.requestTimeout, keepAlive: server.keepAliveTimeout }).toEqual({ headers: 20_000, request: 120_000, keepAlive: 65_000 });
    expect(HTTP_TIMEOUTS.headersTimeout).toBeLessThan(HTTP_TIMEOUTS.requestTimeout);
  });

  it('serves a hot route before Express, with the same request id, headers, metrics and error envelope', async () => {
    stack = await start();
    const ok = await fetch(`${stack.url}/v1/audit/fast?q=ignored`, { method: 'POST', headers: { 'x-request-id': 'req-lean-1' } });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('x-request-id')).toBe('req-lean-1');
    expect(ok.headers.get('x-stack-services')).toBe('audit');
    expect(ok.headers.get('x-stack-instance')).toBe(stack.config.instanceId);
    expect(ok.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await ok.json()).toEqual({ lane: 'fast', express: false, request_id: 'req-lean-1' });

    const limited = await fetch(`${stack.url}/v1/audit/fast?fail=1`, { method: 'POST' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(limited.headers.get('x-request-id')).toMatch(/^req_/);
    expect(await limited.json()).toEqual({ error: { code: 'RATE_LIMITED', message: 'slow down', details: { retry_after_s: 7 } } });

    const crashed = await fetch(`${stack.url}/v1/audit/fast?crash=1`, { method: 'POST' });
    expect(crashed.status).toBe(500);
    expect(await crashed.json()).toEqual({ error: { code: 'INTERNAL_ERROR', message: 'internal error' } });

    // Another method on the same path, and every other route, still go through Express and Nest.
    const other = await get(`${stack.url}/v1/audit/fast`);
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body)).toEqual({ error: { code: 'NOT_FOUND', message: expect.any(String) } });
    expect((await get(`${stack.url}/v1/audit/slow?ms=1`)).status).toBe(200);

    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(/stack_http_requests_total\{[^}]*method="POST",route="\/v1\/audit\/fast",status="201"[^}]*\} 1/);
    expect(metrics).toMatch(/stack_http_requests_total\{[^}]*method="POST",route="\/v1\/audit\/fast",status="429"[^}]*\} 1/);
  });

  it('hands a hot route its path parameters, query and JSON body the way Express would', async () => {
    stack = await start();
    const echo = (path: string, init: RequestInit) => fetch(`${stack!.url}${path}`, { method: 'POST', ...init });
    const ok = await echo('/v1/audit/items/a%2Fb%20c/echo?wait=5', { headers: { 'content-type': 'application/json' }, body: '{"x":[1,2]}' });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ params: { id: 'a/b c' }, wait: '5', body: { x: [1, 2] } });
    const empty = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json' } });
    expect(await empty.json()).toMatchObject({ body: {} });
    const notJson = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'text/plain' }, body: '{"x":1}' });
    expect(await notJson.json()).toMatchObject({ body: null });
    const gz = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync('{"zipped":true}') });
    expect(await gz.json()).toMatchObject({ body: { zipped: true } });
    const bad = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json' }, body: '{"x":' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: { code: 'INVALID_REQUEST', message: 'request body is not valid JSON' } });
    const big = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ x: 'y'.repeat(2000) }) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE');
    const brokenZip = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip at all' });
    expect(brokenZip.status).toBe(400);
    const br = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json', 'content-encoding': 'br' }, body: brotliCompressSync('{"brotli":1}') });
    expect(await br.json()).toMatchObject({ body: { brotli: 1 } });
    // Strict, as express.json: a top-level string or number is not a request body.
    for (const text of ['"abc"', '12', ' null']) {
      const scalar = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json' }, body: text });
      expect({ text, status: scalar.status }).toEqual({ text, status: 400 });
    }
    const latin = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json; charset=iso-8859-1' }, body: '{}' });
    expect(latin.status).toBe(400);
    expect(await latin.json()).toEqual({ error: { code: 'INVALID_REQUEST', message: 'unsupported charset "ISO-8859-1"' } });
    const patch = await echo('/v1/audit/items/i1/echo', { headers: { 'content-type': 'application/json-patch+json' }, body: '[]' });
    expect(await patch.json()).toMatchObject({ body: null });
    // A path with another shape is not this route: Express answers it.
    expect((await echo('/v1/audit/items//echo', {})).status).toBe(404);
    expect((await echo('/v1/audit/items/a/b/echo', {})).status).toBe(404);
  });

  it('keeps a kept-alive connection usable after refusing a body half-way, and does not hang on an aborted upload', async () => {
    stack = await start();
    const { port } = new URL(stack.url);
    const raw = (payload: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.write(payload));
        let got = '';
        socket.on('data', (c: Buffer) => (got += c.toString('latin1')));
        socket.on('end', () => resolve(got));
        socket.on('close', () => resolve(got));
        socket.on('error', reject);
        setTimeout(() => socket.destroy(), 3000);
      });
    // A chunked body over the limit, then a second request on the same connection.
    const big = 'x'.repeat(1500);
    const first = `POST /v1/audit/items/i1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`;
    const second = `POST /v1/audit/items/i2/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`;
    const answers = await raw(first + second);
    expect(answers).toMatch(/^HTTP\/1\.1 413/);
    // Either the connection carried the second request, or the server said it would close it.
    expect(/HTTP\/1\.1 200[\s\S]*"i2"/.test(answers) || /connection: close/i.test(answers)).toBe(true);
    // A gzip upload cut off half-way: the server answers nothing to it, and still serves others.
    const cut = connect(Number(port), '127.0.0.1', () => cut.write(`POST /v1/audit/items/i3/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 1000\r\n\r\n${gzipSync('{"a":1}').subarray(0, 10).toString('latin1')}`));
    await new Promise((r) => setTimeout(r, 100));
    cut.destroy();
    const after = await fetch(`${stack.url}/v1/audit/items/i4/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ok":true}' });
    expect(await after.json()).toMatchObject({ params: { id: 'i4' }, body: { ok: true } });
  });

  it('tells browsers not to sniff any answer, on both lanes and in the error envelope', async () => {
    stack = await start();
    const answers = [
      await fetch(`${stack.url}/v1/audit/fast`, { method: 'POST' }),
      await fetch(`${stack.url}/v1/audit/fast?crash=1`, { method: 'POST' }),
      await fetch(`${stack.url}/v1/audit/slow?ms=1`),
      await fetch(`${stack.url}/v1/audit/nothing-here`),
      await fetch(`${stack.url}/v1/audit/slow`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"broken":' }),
    ];
    expect(answers.map((a) => a.headers.get('x-content-type-options'))).toEqual(answers.map(() => 'nosniff'));
  });

  it('runs a route with a parsed JSON body inside its request context, and answers a refused body through the same chain', async () => {
    stack = await start();
    const big = 'x'.repeat(200_000);
    const ok = await fetch(`${stack.url}/v1/audit/context`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-ctx-1' }, body: JSON.stringify({ big }) });
    expect(await ok.json()).toEqual({ request_id: 'req-ctx-1', trace_id: expect.stringMatching(/^[0-9a-f]{32}$/), size: JSON.stringify({ big }).length });
    const bad = await fetch(`${stack.url}/v1/audit/context`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'req-ctx-2' }, body: '{"broken":' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('x-request-id')).toBe('req-ctx-2');
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(/stack_http_requests_total\{[^}]*method="POST",[^}]*status="400"[^}]*\} 1/);
  });

  it('leaves the body of a raw-body route alone however Express spells its path (case, trailing slash)', async () => {
    stack = await start();
    for (const path of ['/v1/audit/raw', '/v1/audit/raw/', '/V1/Audit/RAW', '/v1/audit/raw/?x=1']) {
      const res = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}', signal: AbortSignal.timeout(3000) }).then(
        async (r) => ({ status: r.status, body: (await r.json()) as unknown }),
        (err: Error) => ({ status: 0, body: err.name }),
      );
      expect({ path, ...res }).toEqual({ path, status: 200, body: { raw: '{"a":1}' } });
    }
  });

  it('re-wraps every sealed value a service declares under the current key, in the background', async () => {
    const oldKey = Keyring.generateEntry('old');
    const newKey = Keyring.generateEntry('new');
    const binding = { operatorId: 'op_rewrap', recordId: 'rec_1' };
    sealedRows.push({ id: 'rec_1', operator_id: 'op_rewrap', secret: await new EnvelopeCipher(Keyring.parse(oldKey)).seal(binding, 'the sealed value') });
    stack = await start({ STACK_MASTER_KEYS: `${newKey},${oldKey}` });
    const deadline = Date.now() + 5000;
    while (sealedRows[0]!.secret.kid !== 'new' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(sealedRows[0]!.secret.kid).toBe('new');
    // The old key can go: the new one alone opens it.
    expect(await new EnvelopeCipher(Keyring.parse(newKey)).open(binding, sealedRows[0]!.secret)).toBe('the sealed value');
  });
});
