/**
 * Stable error codes and their HTTP statuses (DESIGN.md §10). Clients match on these
 * strings, so a code is never renamed or given another status once published.
 */
export const ERROR_STATUS = {
  INVALID_REQUEST: 400,
  SCOPE_ESCALATION: 400,
  DELEGATION_DEPTH_EXCEEDED: 400,
  INVALID_SCHEMA: 400,
  AMBIGUOUS_CONNECTION: 400,
  UNAUTHORIZED: 401,
  PASSPORT_EXPIRED: 401,
  PASSPORT_REVOKED: 401,
  FORBIDDEN: 403,
  CONSTRAINT_VIOLATION: 403,
  OUT_OF_SCOPE: 403,
  NOT_FOUND: 404,
  IDEMPOTENCY_CONFLICT: 409,
  DROPOFF_ALREADY_COLLECTED: 409,
  DROPOFF_ALREADY_DEPOSITED: 409,
  DROPOFF_NOT_DEPOSITED: 409,
  DROPOFF_EXPIRED: 410,
  PAYLOAD_TOO_LARGE: 413,
  SCHEMA_VALIDATION_FAILED: 422,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  UPSTREAM_ERROR: 502,
  SERVICE_UNAVAILABLE: 503,
  REVOCATION_STATE_STALE: 503,
  AUDIT_UNAVAILABLE: 503,
  UPSTREAM_TIMEOUT: 504,
  BUS_TIMEOUT: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export const ERROR_CODES = Object.keys(ERROR_STATUS) as ErrorCode[];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_STATUS, value);
}

/** The error envelope every REST answer, tool error and bus reply uses. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * The one exception type STACK code throws for an expected failure. Anything else that
 * escapes is an INTERNAL_ERROR whose message is not shown to the caller.
 */
export class StackError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'StackError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }

  static fromBody(body: ErrorBody): StackError {
    return new StackError(isErrorCode(body.code) ? body.code : 'INTERNAL_ERROR', body.message, body.details);
  }
}
