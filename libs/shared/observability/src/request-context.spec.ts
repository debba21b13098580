import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { HttpMiddleware } from './http-middleware.types';
import { createLogger } from './logger';
import { newRequestId, requestContext, requestIdMiddleware, saneRequestId } from './request-context';

function serve(middleware: HttpMiddleware[], handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const run = (i: number): void => {
      if (i === middleware.length) return handler(req, res);
      middleware[i](req, res, (err) => (err ? res.writeHead(500).end() : run(i + 1)));
    };
    run(0);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })));
}

describe('request ids', () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', service: 'auth', instance: 'i1', destination: { write: (l: string) => lines.push(l) } });
  let server: Server;
  let url: string;

  beforeAll(async () => {
    ({ server, url } = await serve([requestIdMiddleware], (req, res) => {
      // Work that crosses awaits and timers still sees its own request.
      void (async () => {
        await new Promise((resolve) => setTimeout(resolve, Number(req.headers['x-delay'] ?? 0)));
        logger.info({ path: req.url }, 'handled');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ seen: requestContext.current()?.requestId ?? null }));
      })();
    }));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function call(headers: Record<string, string> = {}): Promise<{ header: string | null; seen: string | null }> {
    const res = await fetch(url, { headers });
    const body = (await res.json()) as { seen: string | null };
    return { header: res.headers.get('x-request-id'), seen: body.seen };
  }

  it('makes an id when the caller sent none, and echoes it', async () => {
    const { header, seen } = await call();
    expect(header).toMatch(/^req_[A-Za-z0-9_-]{16}$/);
    expect(seen).toBe(header);
  });

  it("keeps the caller's sane X-Request-Id", async () => {
    const { header, seen } = await call({ 'X-Request-Id': 'abc.DEF-123_x' });
    expect(header).toBe('abc.DEF-123_x');
    expect(seen).toBe('abc.DEF-123_x');
  });

  it.each([['x'.repeat(129)], ['has space'], ['semi;colon'], ['quote"d'], ['']])('replaces an insane X-Request-Id %#', async (bad) => {
    const { header } = await call({ 'X-Request-Id': bad });
    expect(header).toMatch(/^req_/);
    expect(header).not.toBe(bad);
  });

  it('keeps concurrent requests apart, and their log lines carry their ids', async () => {
    lines.length = 0;
    const ids = ['first-request', 'second-request', 'third-request'];
    // The first waits longest, so the three interleave.
    const results = await Promise.all(ids.map((id, i) => call({ 'X-Request-Id': id, 'X-Delay': String(200 - i * 100) })));
    expect(results.map((r) => r.seen)).toEqual(ids);
    const logged = lines.map((l) => JSON.parse(l) as { request_id: string; msg: string });
    expect(logged.map((l) => l.request_id).sort()).toEqual([...ids].sort());
    // Completion order differs from start order: the context did not leak between them.
    expect(logged.map((l) => l.request_id)).toEqual([...ids].reverse());
  });
});

describe('request context helpers', () => {
  it('newRequestId is unique and sane', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newRequestId()));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(saneRequestId(id)).toBe(id);
  });

  it('run returns what fn returns and current() is undefined outside', () => {
    expect(requestContext.current()).toBeUndefined();
    expect(requestContext.run({ requestId: 'r1' }, () => requestContext.current()?.requestId)).toBe('r1');
    expect(requestContext.current()).toBeUndefined();
  });

  it('saneRequestId takes the first of repeated headers', () => {
    expect(saneRequestId(['ok-1', 'ok-2'])).toBe('ok-1');
    expect(saneRequestId(undefined)).toBeUndefined();
    expect(saneRequestId('x'.repeat(128))).toBe('x'.repeat(128));
  });
});
