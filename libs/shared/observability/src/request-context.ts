/**
 * The request context: who-and-which-request facts that follow a piece of work through every
 * `await` (AsyncLocalStorage), so a log line written deep inside a handler still carries its
 * request id and trace id without anyone passing them down.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { HttpNext } from './http-middleware.types';
import { randomId } from './random-id';

export interface RequestContext {
  /** `req_…`, or the caller's own `X-Request-Id` when it is sane. */
  readonly requestId: string;
  readonly traceId?: string;
  readonly spanId?: string;
}

export const REQUEST_ID_HEADER = 'x-request-id';

const storage = new AsyncLocalStorage<RequestContext>();

export const requestContext = {
  /** Runs `fn` (and everything it starts) inside `ctx`; returns what `fn` returns. */
  run<T>(ctx: RequestContext, fn: () => T): T {
    return storage.run(ctx, fn);
  },
  /** The context of the work now running, if any. */
  current(): RequestContext | undefined {
    return storage.getStore();
  },
};

/** Same as `requestContext.current()`, as a plain function for hot paths. */
export function currentRequestContext(): RequestContext | undefined {
  return storage.getStore();
}

export function newRequestId(): string {
  return randomId('req_', 12);
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * A request id a caller sent, if it is safe to echo and log: at most 128 characters of
 * `[A-Za-z0-9._-]` — anything else could forge log lines or split headers.
 */
export function saneRequestId(value: unknown): string | undefined {
  const candidate = Array.isArray(value) ? value[0] : value;
  return typeof candidate === 'string' && SANE_REQUEST_ID.test(candidate) ? candidate : undefined;
}

/** Takes the request's id from `X-Request-Id` when sane or makes one, and echoes it on the response. */
export function resolveRequestId(req: IncomingMessage, res: ServerResponse): string {
  const requestId = saneRequestId(req.headers[REQUEST_ID_HEADER]) ?? newRequestId();
  if (!res.headersSent) res.setHeader('X-Request-Id', requestId);
  return requestId;
}

/**
 * Express-compatible middleware: gives the request its id and runs the rest of the request inside
 * its context. Mount it first, before tracing and metrics.
 */
export function requestIdMiddleware(req: IncomingMessage, res: ServerResponse, next: HttpNext): void {
  const requestId = resolveRequestId(req, res);
  storage.run({ requestId }, () => next());
}
