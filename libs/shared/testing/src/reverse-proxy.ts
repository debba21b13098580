/**
 * The reverse proxy the distributed tests put in front of the services: it plays the Kubernetes
 * Ingress, routing by path with the same table (PUBLIC_ROUTES) and the same "first match wins"
 * rule as `routeFor`, spreading requests round-robin over a service's replicas, and streaming both
 * directions (an SSE response reaches the client event by event, never buffered).
 *
 * Like ingress-nginx it appends the client address to X-Forwarded-For and sets X-Forwarded-Proto
 * and -Host, keeps the original Host header, and answers in STACK's error envelope itself when it
 * cannot route (404 NOT_FOUND) or a replica does not answer (502 UPSTREAM_ERROR).
 */
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import type { PublicRoute, ServiceName } from '@stack/contracts';

export interface ReverseProxyOptions {
  /** Usually PUBLIC_ROUTES from @stack/contracts. */
  routes: readonly PublicRoute[];
  /** Base URLs of each service's replicas, e.g. `{ auth: ['http://127.0.0.1:41001'] }`. */
  upstreams: Partial<Record<ServiceName, readonly string[]>>;
  /** Service that receives paths no route matches; without it they get 404. */
  fallback?: ServiceName;
  /** Port to listen on; default a free one. */
  port?: number;
  host?: string;
  /**
   * When a replica refuses the connection, try the next one for bodyless GET/HEAD/OPTIONS
   * requests (what ingress-nginx's `proxy_next_upstream error` does). Off by default so a
   * test sees the 502 of a replica that is down.
   */
  retryIdempotent?: boolean;
}

export interface ReverseProxy {
  /** `http://host:port`, no trailing slash. */
  url: string;
  port: number;
  stop(): Promise<void>;
  /** Replaces a service's replicas (an empty list takes it out of rotation). */
  setUpstreams(service: ServiceName, urls: readonly string[]): void;
  /** Requests sent to each upstream base URL since start (or the last resetHits). */
  hits(): Record<string, number>;
  resetHits(): void;
}

// RFC 9110 §7.6.1: connection-specific headers are not forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Same rule as `routeFor` in @stack/contracts, over a given table. */
export function matchRoute(routes: readonly PublicRoute[], pathname: string): PublicRoute | undefined {
  return routes.find((r) => (r.exact ? pathname === r.path : pathname === r.path || pathname.startsWith(r.path.endsWith('/') ? r.path : `${r.path}/`)));
}

function pathOf(target: string): string {
  if (/^https?:\/\//i.test(target)) {
    try {
      return new URL(target).pathname;
    } catch {
      return '/';
    }
  }
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const list = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    list
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

function forwardableRequestHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const drop = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** Upstream response headers as a flat raw list (keeps repeated Set-Cookie lines and their case). */
function forwardableResponseHeaders(raw: readonly string[], connection: string | string[] | undefined): string[] {
  const drop = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (HOP_BY_HOP.has(name) || drop.has(name)) continue;
    out.push(raw[i], raw[i + 1]);
  }
  return out;
}

function normaliseBase(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:') throw new Error(`reverse proxy upstream ${url}: only http:// upstreams are supported`);
  return url.replace(/\/+$/, '');
}

/** The largest request body the proxy reads before forwarding (ingress-nginx's proxy-body-size, set high). */
const MAX_BUFFERED_BODY_BYTES = 64 * 1024 * 1024;

export async function startReverseProxy(options: ReverseProxyOptions): Promise<ReverseProxy> {
  const host = options.host ?? '127.0.0.1';
  const upstreams = new Map<ServiceName, string[]>();
  const cursor = new Map<ServiceName, number>();
  let hitCounts: Record<string, number> = {};
  const setUpstreams = (service: ServiceName, urls: readonly string[]): void => {
    upstreams.set(service, urls.map(normaliseBase));
  };
  for (const [service, urls] of Object.entries(options.upstreams) as [ServiceName, readonly string[] | undefined][]) {
    if (urls) setUpstreams(service, urls);
  }
  // Keep-alive to the replicas, as an ingress does; without it every request pays a TCP handshake.
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const sockets = new Set<Socket>();
  let port = 0;

  const pick = (service: ServiceName, skip: ReadonlySet<string>): string | undefined => {
    const list = (upstreams.get(service) ?? []).filter((u) => !skip.has(u));
    if (list.length === 0) return undefined;
    const n = cursor.get(service) ?? 0;
    cursor.set(service, n + 1);
    return list[n % list.length];
  };

  const forward = (req: IncomingMessage, res: ServerResponse, service: ServiceName, tried: Set<string>, body?: Buffer): void => {
    const base = pick(service, tried);
    if (base === undefined) {
      sendError(res, 502, 'UPSTREAM_ERROR', tried.size > 0 ? `no replica of ${service} answered` : `no replica of ${service} is running`);
      return;
    }
    tried.add(base);
    hitCounts[base] = (hitCounts[base] ?? 0) + 1;
    const target = new URL(base);
    const rawTarget = req.url ?? '/';
    const pathAndQuery = /^https?:\/\//i.test(rawTarget) ? rawTarget.replace(/^https?:\/\/[^/]*/i, '') || '/' : rawTarget;
    const basePath = target.pathname === '/' ? '' : target.pathname;

    const headers = forwardableRequestHeaders(req.headers);
    const clientAddress = req.socket.remoteAddress ?? '';
    const priorFor = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = priorFor ? `${Array.isArray(priorFor) ? priorFor.join(', ') : priorFor}, ${clientAddress}` : clientAddress;
    headers['x-forwarded-proto'] = 'http';
    headers['x-forwarded-host'] = req.headers.host ?? `${host}:${port}`;
    headers['x-forwarded-port'] = String(port);

    const bodyless = body === undefined;
    if (body) {
      // The body was read whole before forwarding: it goes with its length.
      headers['content-length'] = String(body.length);
      delete headers['transfer-encoding'];
    }
    const upstreamReq = httpRequest({
      host: target.hostname,
      port: target.port || 80,
      method: req.method,
      path: basePath + pathAndQuery,
      headers,
      agent,
    });

    let answer: IncomingMessage | undefined;
    upstreamReq.on('response', (upstreamRes) => {
      answer = upstreamRes;
      const outHeaders = forwardableResponseHeaders(upstreamRes.rawHeaders, upstreamRes.headers.connection);
      // An upstream that closes its connection after the answer has the client's closed after it too.
      if (connectionTokens(upstreamRes.headers.connection).has('close')) outHeaders.push('Connection', 'close');
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, outHeaders);
      // Send the head now: an SSE client must see the response start before the first event.
      res.flushHeaders();
      upstreamRes.pipe(res);
      upstreamRes.on('error', () => upstreamRes.complete || res.destroy());
      upstreamRes.on('aborted', () => res.destroy());
    });

    upstreamReq.on('error', (err: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        // After a whole answer the upstream's reset ends nothing the client still waits for.
        if (!answer?.complete) res.destroy();
        return;
      }
      const refused = err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EHOSTUNREACH';
      if (options.retryIdempotent && bodyless && refused && !res.destroyed) {
        forward(req, res, service, tried, body);
        return;
      }
      if (!res.destroyed) sendError(res, 502, 'UPSTREAM_ERROR', `${service} replica ${base} did not answer (${err.code ?? err.message})`);
    });

    // A client that goes away (closing an SSE stream, say) must be seen by the service too.
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });

    upstreamReq.end(body);
  };

  /**
   * A request body is read whole before it is forwarded, as ingress-nginx does by default
   * (proxy_request_buffering): the upstream then sees a complete request however slowly the client
   * sent it, and an early answer (a 413 to an oversized body) never reaches a client still
   * uploading on a connection it would then reuse — streamed, that raced: the next request on it
   * failed with ECONNRESET.
   */
  const readBody = (req: IncomingMessage, res: ServerResponse, then: (body: Buffer | undefined) => void): void => {
    const bodyless = BODYLESS_METHODS.has(req.method ?? 'GET') && req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined;
    if (bodyless) {
      req.resume();
      then(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BUFFERED_BODY_BYTES) refused = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) sendError(res, 413, 'PAYLOAD_TOO_LARGE', `request bodies through this proxy are limited to ${MAX_BUFFERED_BODY_BYTES} bytes`);
      else then(Buffer.concat(chunks, size));
    });
    req.on('error', () => res.destroy());
  };

  const server = createServer((req, res) => {
    const pathname = pathOf(req.url ?? '/');
    const service = matchRoute(options.routes, pathname)?.service ?? options.fallback;
    if (!service) {
      req.resume();
      sendError(res, 404, 'NOT_FOUND', `no service serves ${pathname}`);
      return;
    }
    readBody(req, res, (body) => forward(req, res, service, new Set(), body));
  });
  // Long-lived streams (SSE, slow uploads) are the point of some tests; no server-side cut-off.
  server.requestTimeout = 0;
  // Idle keep-alive connections are closed by the client first, as an Ingress (nginx: 75 s) and
  // STACK's own servers (65 s) leave it to: with Node's 5 s here, fetch's pool (which drops an idle
  // connection after ~4 s, timed coarsely) could send a request on a connection this server was
  // closing, and the request failed with ECONNRESET.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;

  let stopped: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    setUpstreams,
    hits: () => ({ ...hitCounts }),
    resetHits: () => {
      hitCounts = {};
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        agent.destroy();
      });
      return stopped;
    },
  };
}
