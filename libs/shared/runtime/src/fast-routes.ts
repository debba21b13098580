/**
 * The lean HTTP lane: a few hot routes (the proxy's `POST /v1/proxy`) answered straight from
 * Node's `http` server, before Express and Nest. Everything a request gets on the ordinary path
 * it gets here too, through the same middleware functions in the same order — request id,
 * trace span, metrics, the access line, the X-Stack-* headers — and errors leave in the same
 * envelope as StackErrorFilter writes. What it skips is the per-request routing, guard,
 * interceptor and response machinery of Express and Nest, which costs more than the rest of a
 * proxy call.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createGunzip, createInflate } from 'node:zlib';

import { StackError } from '@stack/contracts';
import type { HttpMiddleware, StackLogger } from '@stack/observability';

import { toStackError } from './stack-error.filter';

/** What a hot route answers: a status and a JSON body. Throwing a StackError answers its envelope. */
export interface FastAnswer {
  status: number;
  body: unknown;
}

/** What the lane parsed of the request line for the handler. */
export interface FastRequestParts {
  /** `:name` segments of the route's path, decoded. */
  params: Record<string, string>;
  query: URLSearchParams;
}

export interface FastRoute {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /**
   * The request path, segment by segment: literal segments match exactly, a `:name` segment
   * matches any one non-empty segment and is handed over decoded in `params`. The query string is
   * not part of the match.
   */
  path: string;
  handle(req: IncomingMessage, res: ServerResponse, parts: FastRequestParts): Promise<FastAnswer>;
}

const JSON_TYPE = /^application\/json\b/i;

/**
 * The request body as the runtime's JSON parser would give it to a controller: parsed when the
 * content type is JSON (an empty body is `{}`), `undefined` otherwise; too large →
 * PAYLOAD_TOO_LARGE, malformed → INVALID_REQUEST, with the parser's messages.
 */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  if (!JSON_TYPE.test(req.headers['content-type'] ?? '')) {
    req.resume();
    return undefined;
  }
  const declared = Number(req.headers['content-length']);
  if (declared > limitBytes) throw new StackError('PAYLOAD_TOO_LARGE', 'request body is too large');
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  let source: AsyncIterable<Buffer> = req;
  if (encoding === 'gzip' || encoding === 'deflate') source = req.pipe(encoding === 'gzip' ? createGunzip() : createInflate());
  else if (encoding !== 'identity') throw new StackError('INVALID_REQUEST', `unsupported content encoding "${encoding.slice(0, 32)}"`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of source) {
      size += chunk.length;
      if (size > limitBytes) throw new StackError('PAYLOAD_TOO_LARGE', 'request body is too large');
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof StackError) throw err;
    throw new StackError('INVALID_REQUEST', 'request body could not be read (bad compression or an aborted upload)');
  }
  const text = Buffer.concat(chunks, size).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StackError('INVALID_REQUEST', 'request body is not valid JSON');
  }
}

interface CompiledRoute {
  route: FastRoute;
  segments: readonly string[];
}

function compile(route: FastRoute): CompiledRoute {
  return { route, segments: route.path.split('/') };
}

function matchSegments(segments: readonly string[], parts: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined;
  let params: Record<string, string> | undefined;
  for (let i = 0; i < segments.length; i++) {
    const want = segments[i]!;
    const got = parts[i]!;
    if (want.startsWith(':')) {
      if (got === '') return undefined;
      let value: string;
      try {
        value = decodeURIComponent(got);
      } catch {
        return undefined;
      }
      (params ??= {})[want.slice(1)] = value;
    } else if (want !== got) return undefined;
  }
  return params ?? {};
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

export function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Writes a JSON answer the way Express's `res.status().json()` does. */
export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

/** The error envelope of StackErrorFilter, for errors raised outside Nest. */
export function writeError(res: ServerResponse, err: unknown, logger: StackLogger): void {
  let e = toStackError(err);
  if (!e) {
    logger.error({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'unhandled error');
    e = new StackError('INTERNAL_ERROR', 'internal error');
  }
  if (res.headersSent || res.destroyed) return;
  if (e.code === 'RATE_LIMITED' && typeof e.details?.retry_after_s === 'number') res.setHeader('Retry-After', String(e.details.retry_after_s));
  writeJson(res, e.status, { error: e.toBody() });
}

/**
 * Puts `routes` in front of the server's request listener (Express): a request whose method and
 * path match one is served through `middlewares` and its handler; anything else goes on to
 * Express untouched. Returns a function that restores the original listener.
 */
export function installFastRoutes(server: Server, routes: readonly FastRoute[], middlewares: readonly HttpMiddleware[], logger: StackLogger): () => void {
  if (routes.length === 0) return () => undefined;
  const exact = new Map<string, FastRoute>();
  const patterns = new Map<string, CompiledRoute[]>();
  for (const r of routes) {
    if (!r.path.includes('/:')) exact.set(`${r.method} ${r.path}`, r);
    else patterns.set(r.method, [...(patterns.get(r.method) ?? []), compile(r)]);
  }
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) throw new Error(`installFastRoutes expects one request listener on the server, found ${listeners.length}`);
  const fallback = listeners[0]!;

  const serve = (route: FastRoute, params: Record<string, string>, req: IncomingMessage, res: ServerResponse) => {
    // What Express would have set: metrics and spans name the route by its pattern (matchedRoute).
    Object.assign(req, { route: { path: route.path }, baseUrl: '' });
    let i = 0;
    const next = (err?: unknown): void => {
      if (err !== undefined) return writeError(res, err, logger);
      const mw = middlewares[i++];
      if (mw) {
        try {
          mw(req, res, next);
        } catch (e) {
          writeError(res, e, logger);
        }
        return;
      }
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      route.handle(req, res, { params, query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)) }).then(
        (answer) => writeJson(res, answer.status, answer.body),
        (e: unknown) => writeError(res, e, logger),
      );
    };
    next();
  };

  const listener: RequestListener = (req, res) => {
    const path = pathOf(req.url);
    const route = exact.get(`${req.method} ${path}`);
    if (route) return serve(route, {}, req, res);
    const candidates = patterns.get(req.method ?? '');
    if (candidates) {
      const parts = path.split('/');
      for (const c of candidates) {
        const params = matchSegments(c.segments, parts);
        if (params) return serve(c.route, params, req, res);
      }
    }
    fallback(req, res);
  };
  server.removeListener('request', fallback);
  server.on('request', listener);
  return () => {
    server.removeListener('request', listener);
    server.on('request', fallback);
  };
}
