/**
 * Every REST error leaves in one envelope, `{"error": {"code", "message", "details?"}}`
 * (DESIGN.md §10): StackError with its fixed status, Nest's own HTTP errors mapped to the
 * nearest stable code, anything else a 500 whose message is logged, never shown.
 */
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

@Catch()
export class StackErrorFilter implements ExceptionFilter {
  constructor(private readonly logger: StackLogger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    let err = toStackError(exception);
    if (!err) {
      this.logger.error({ err: exception instanceof Error ? { message: exception.message, stack: exception.stack } : String(exception) }, 'unhandled error');
      err = new StackError('INTERNAL_ERROR', 'internal error');
    }
    if (res.headersSent) return;
    if (err.code === 'RATE_LIMITED' && typeof err.details?.retry_after_s === 'number') res.setHeader('Retry-After', String(err.details.retry_after_s));
    res.status(err.status).json({ error: err.toBody() });
  }
}
