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

import { StackError } from '@stack/contracts';
import type { HttpMiddleware, StackLogger } from '@stack/observability';

import { toStackError } from './stack-error.filter';

/** What a hot route answers: a status and a JSON body. Throwing a StackError answers its envelope. */
export interface FastAnswer {
  status: number;
  body: unknown;
}

export interface FastRoute {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Matched exactly against the request path (the query string is ignored). */
  path: string;
  handle(req: IncomingMessage, res: ServerResponse): Promise<FastAnswer>;
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
  const byKey = new Map(routes.map((r) => [`${r.method} ${r.path}`, r]));
  if (byKey.size === 0) return () => undefined;
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) throw new Error(`installFastRoutes expects one request listener on the server, found ${listeners.length}`);
  const fallback = listeners[0]!;

  const serve = (route: FastRoute, req: IncomingMessage, res: ServerResponse) => {
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
      route.handle(req, res).then(
        (answer) => writeJson(res, answer.status, answer.body),
        (e: unknown) => writeError(res, e, logger),
      );
    };
    next();
  };

  const listener: RequestListener = (req, res) => {
    const route = byKey.get(`${req.method} ${pathOf(req.url)}`);
    if (route) serve(route, req, res);
    else fallback(req, res);
  };
  server.removeListener('request', fallback);
  server.on('request', listener);
  return () => {
    server.removeListener('request', listener);
    server.on('request', fallback);
  };
}
