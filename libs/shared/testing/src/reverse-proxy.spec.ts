import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { PUBLIC_ROUTES, routeFor } from '@stack/contracts';

import { freePort } from './free-port';
import { matchRoute, startReverseProxy } from './reverse-proxy';
import type { ReverseProxy } from './reverse-proxy';

interface Echo {
  upstream: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

interface Upstream {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** An upstream that answers every request with what it received, tagged with its own name. */
async function echoUpstream(name: string): Promise<Upstream> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: Echo = { upstream: name, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      res.setHeader('content-type', 'application/json');
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
      res.end(JSON.stringify(echo));
    });
  });
  return listen(server);
}

async function listen(server: Server): Promise<Upstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('startReverseProxy', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (cleanup.length > 0) await (cleanup.pop() as () => Promise<void>)();
  });

  async function proxyFor(upstreams: Parameters<typeof startReverseProxy>[0]['upstreams'], extra: Partial<Parameters<typeof startReverseProxy>[0]> = {}): Promise<ReverseProxy> {
    const proxy = await startReverseProxy({ routes: PUBLIC_ROUTES, upstreams, ...extra });
    cleanup.push(() => proxy.stop());
    return proxy;
  }
  async function upstream(name: string): Promise<Upstream> {
    const u = await echoUpstream(name);
    cleanup.push(() => u.close());
    return u;
  }

  /**
   * Requests to `url` over one keep-alive connection at most, a body sent with its length or in
   * 64 KB chunks: the status, the Connection header and the socket each answer came on.
   */
  function oneConnection(url: string, framing: 'length' | 'chunked') {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(async () => agent.destroy());
    return (method: string, body?: Buffer) =>
      new Promise<{ status: number; connection?: string; socket: unknown }>((resolve, reject) => {
        const headers = !body ? {} : framing === 'length' ? { 'content-length': String(body.length) } : { 'transfer-encoding': 'chunked' };
        const r = httpRequest(url, { method, agent, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, socket: r.socket }));
        });
        r.on('error', reject);
        if (body) for (let i = 0; i < body.length; i += 64 * 1024) r.write(body.subarray(i, i + 64 * 1024));
        r.end();
      });
  }

  it('closes the client connection after an answer that closes the upstream one (a 413 to an oversized body), and the next request goes on a new one', async () => {
    // As STACK's services do with an oversized body: a 413 that closes the connection after it.
    const early = createServer((req, res) => {
      if (req.method === 'POST') {
        req.resume();
        req.on('end', () => {
          res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
          res.end('{"error":{"code":"PAYLOAD_TOO_LARGE"}}');
        });
        return;
      }
      req.resume();
      res.end('ok');
    });
    const u = await listen(early);
    cleanup.push(() => u.close());
    const proxy = await proxyFor({ 'mcp-gateway': [u.url] });
    const send = oneConnection(`${proxy.url}/mcp`, 'length');
    for (let i = 0; i < 5; i++) {
      const big = await send('POST', Buffer.alloc(2 * 1024 * 1024, 'x'));
      expect({ status: big.status, connection: big.connection }).toEqual({ status: 413, connection: 'close' });
      const next = await send('GET');
      expect(next.status).toBe(200);
      expect(next.socket).not.toBe(big.socket);
    }
  });

  it('reads a request body whole before forwarding it, so an early answer leaves the client connection in step for the next request', async () => {
    // As a STACK service does with a body larger than its limit: answer at once, read nothing (Node drains the rest).
    const seen: Array<string | undefined> = [];
    const early = createServer((req, res) => {
      seen.push(req.headers['content-length']);
      res.writeHead(req.method === 'POST' ? 413 : 200, { 'content-type': 'text/plain' });
      res.end(req.method === 'POST' ? 'too large' : 'ok');
    });
    const u = await listen(early);
    cleanup.push(() => u.close());
    const proxy = await proxyFor({ 'mcp-gateway': [u.url] });
    const send = oneConnection(`${proxy.url}/mcp`, 'chunked');
    for (let i = 0; i < 5; i++) {
      const big = await send('POST', Buffer.alloc(2 * 1024 * 1024, 'x'));
      expect(big.status).toBe(413);
      const next = await send('GET');
      expect(next.status).toBe(200);
      // The same keep-alive connection carried both: nothing was reset.
      expect(next.socket).toBe(big.socket);
    }
    // A chunked upload reaches the service whole, with its length.
    expect(seen.filter((n) => n !== undefined)).toEqual(Array(5).fill(String(2 * 1024 * 1024)));
  });

  it('matches routes exactly as routeFor does', () => {
    const paths = [
      '/',
      '/mcp',
      '/mcp/',
      '/mcpx',
      '/oauth/token',
      '/login',
      '/v1/openapi.json',
      '/v1/openapi.jsonx',
      '/v1/.well-known/jwks.json',
      '/v1/agents',
      '/v1/agents/agt_1/grants',
      '/v1/proxy',
      '/v1/proxyx',
      '/v1/audit/proofs/inclusion',
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-authorization-server',
      '/healthz',
    ];
    for (const p of paths) expect([p, matchRoute(PUBLIC_ROUTES, p)?.service]).toEqual([p, routeFor(p)?.service]);
  });

  it('routes each path to the service that owns it and forwards method, path, query, body and headers', async () => {
    const auth = await upstream('auth');
    const proxyService = await upstream('credential-proxy');
    const gateway = await upstream('mcp-gateway');
    const proxy = await proxyFor({ auth: [auth.url], 'credential-proxy': [proxyService.url], 'mcp-gateway': [gateway.url] });

    const token = (await (await fetch(`${proxy.url}/oauth/token?x=1`, { method: 'POST', body: 'grant_type=x' })).json()) as Echo;
    expect(token).toMatchObject({ upstream: 'auth', method: 'POST', url: '/oauth/token?x=1', body: 'grant_type=x' });

    const res = await fetch(`${proxy.url}/v1/proxy`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': '203.0.113.7', authorization: 'Bearer t' },
      body: JSON.stringify({ hello: 'world' }),
    });
    const echoed = (await res.json()) as Echo;
    expect(echoed.upstream).toBe('credential-proxy');
    expect(JSON.parse(echoed.body)).toEqual({ hello: 'world' });
    expect(echoed.headers.authorization).toBe('Bearer t');
    // Appended, as ingress-nginx does: the service decides which hops to believe.
    expect(echoed.headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(echoed.headers['x-forwarded-proto']).toBe('http');
    expect(echoed.headers['x-forwarded-host']).toBe(`127.0.0.1:${proxy.port}`);
    expect(echoed.headers.host).toBe(`127.0.0.1:${proxy.port}`);
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/']);

    const exact = (await (await fetch(`${proxy.url}/v1/openapi.json`)).json()) as Echo;
    expect(exact.upstream).toBe('mcp-gateway');
  });

  it('answers 404 NOT_FOUND in the error envelope for a path no route matches, unless a fallback is set', async () => {
    const auth = await upstream('auth');
    const proxy = await proxyFor({ auth: [auth.url] });
    for (const path of ['/nowhere', '/v1/proxyx', '/v1/openapi.jsonx']) {
      const res = await fetch(`${proxy.url}${path}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    }
    const withFallback = await proxyFor({ auth: [auth.url] }, { fallback: 'auth' });
    const echoed = (await (await fetch(`${withFallback.url}/nowhere`)).json()) as Echo;
    expect(echoed).toMatchObject({ upstream: 'auth', url: '/nowhere' });
  });

  it('spreads requests round-robin over the replicas and counts hits per upstream', async () => {
    const one = await upstream('one');
    const two = await upstream('two');
    const proxy = await proxyFor({ passport: [one.url, two.url] });
    const seen: string[] = [];
    for (let i = 0; i < 10; i += 1) seen.push(((await (await fetch(`${proxy.url}/v1/agents`)).json()) as Echo).upstream);
    expect(seen.filter((s) => s === 'one')).toHaveLength(5);
    expect(seen.filter((s) => s === 'two')).toHaveLength(5);
    expect(proxy.hits()).toEqual({ [one.url]: 5, [two.url]: 5 });

    proxy.resetHits();
    proxy.setUpstreams('passport', [two.url]);
    const after = ((await (await fetch(`${proxy.url}/v1/passports`)).json()) as Echo).upstream;
    expect(after).toBe('two');
    expect(proxy.hits()).toEqual({ [two.url]: 1 });
  });

  it('answers 502 UPSTREAM_ERROR when the chosen replica is down, and 502 when a service has none', async () => {
    const deadPort = await freePort();
    const proxy = await proxyFor({ audit: [`http://127.0.0.1:${deadPort}`] });
    const res = await fetch(`${proxy.url}/v1/audit`);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('UPSTREAM_ERROR');
    expect(body.error.message).toContain('audit');

    const none = await fetch(`${proxy.url}/v1/skills`);
    expect(none.status).toBe(502);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('UPSTREAM_ERROR');
  });

  it('with retryIdempotent, sends a GET on to a live replica when another refuses', async () => {
    const live = await upstream('live');
    const dead = `http://127.0.0.1:${await freePort()}`;
    const proxy = await proxyFor({ audit: [dead, live.url] }, { retryIdempotent: true });
    for (let i = 0; i < 4; i += 1) {
      const res = await fetch(`${proxy.url}/v1/audit`);
      expect(res.status).toBe(200);
    }
    // A POST is never replayed: it may have reached the replica.
    const statuses: number[] = [];
    for (let i = 0; i < 2; i += 1) statuses.push((await fetch(`${proxy.url}/v1/audit`, { method: 'POST', body: 'x' })).status);
    expect(statuses.sort()).toEqual([200, 502]);
  });

  it('streams server-sent events as they are written, and tells the upstream when the client leaves', async () => {
    let releaseSecond: () => void = () => undefined;
    const secondMayGo = new Promise<void>((resolve) => {
      releaseSecond = resolve;
    });
    let upstreamSawClose: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => {
      upstreamSawClose = resolve;
    });
    const sse = await listen(
      createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: one\n\n');
        // The second event is written only after the client has received the first: a buffering
        // proxy would deadlock here and the test would time out.
        void secondMayGo.then(() => res.write('data: two\n\n'));
        req.on('close', () => upstreamSawClose());
        res.on('close', () => upstreamSawClose());
      }),
    );
    cleanup.push(() => sse.close());
    const proxy = await proxyFor({ 'mcp-gateway': [sse.url] });

    const controller = new AbortController();
    const res = await fetch(`${proxy.url}/mcp`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let received = '';
    const readUntil = async (text: string): Promise<void> => {
      while (!received.includes(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${text}`);
        received += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('data: one');
    expect(received).not.toContain('two');
    releaseSecond();
    await readUntil('data: two');

    controller.abort();
    await reader.cancel().catch(() => undefined);
    await closed;
  });
});
