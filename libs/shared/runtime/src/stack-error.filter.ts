/**
 * Every REST error leaves in one envelope, `{"error": {"code", "message", "details?"}}`
 * (DESIGN.md §10): StackError with its fixed status, Nest's own HTTP errors mapped to the
 * nearest stable code, anything else a 500 whose message is logged, never shown.
 */
import type { ServerResponse } from 'node:http';

import { ArgumentsHost, Catch, HttpException, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';

import { StackError, type ErrorCode } from '@stack/contracts';
import type { StackLogger } from '@stack/observability';

function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'INVALID_REQUEST';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 429:
      return 'RATE_LIMITED';
    case 503:
      return 'SERVICE_UNAVAILABLE';
    default:
      return status >= 500 ? 'INTERNAL_ERROR' : 'INVALID_REQUEST';
  }
}

export function toStackError(err: unknown): StackError | undefined {
  if (err instanceof StackError) return err;
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = codeForStatus(status);
    return new StackError(code, status === 404 ? 'no such resource' : err.message);
  }
  // body-parser errors (malformed JSON, body too large) carry a status and a type.
  const e = err as { status?: number; type?: string; message?: string };
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
    if (e.type === 'entity.too.large') return new StackError('PAYLOAD_TOO_LARGE', 'request body is too large');
    if (e.type === 'entity.parse.failed') return new StackError('INVALID_REQUEST', 'request body is not valid JSON');
    return new StackError(codeForStatus(e.status), e.message ?? 'invalid request');
  }
  return undefined;
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

/** The error envelope, written for Nest (StackErrorFilter) and for the lean lane (fast-routes.ts) alike. */
export function writeError(res: ServerResponse, err: unknown, logger: StackLogger): void {
  let e = toStackError(err);
  if (!e) {
    logger.error({ request_id: res.getHeader('X-Request-Id'), err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'unhandled error');
    e = new StackError('INTERNAL_ERROR', 'internal error');
  }
  if (res.headersSent || res.destroyed) return;
  if (e.code === 'RATE_LIMITED' && typeof e.details?.retry_after_s === 'number') res.setHeader('Retry-After', String(e.details.retry_after_s));
  writeJson(res, e.status, { error: e.toBody() });
}

@Catch()
export class StackErrorFilter implements ExceptionFilter {
  constructor(private readonly logger: StackLogger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    writeError(host.switchToHttp().getResponse<Response>(), exception, this.logger);
  }
}
