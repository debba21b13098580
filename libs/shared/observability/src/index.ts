/**
 * @stack/observability: logs, request context, metrics, traces and readiness checks shared by every
 * STACK service.
 */
export { createLogger, MemoryLogDestination } from './logger';
export type { CreateLoggerOptions, LogDestination, LogFields, LogMethod, StackLogger, StackLogLevel } from './logger';
export { isSensitiveKey, MIN_SECRET_LENGTH, REDACTED, redactSensitiveKeys, SecretRedactor } from './secret-redactor';
export { NestLoggerAdapter } from './nest-logger.adapter';
export {
  currentRequestContext,
  newRequestId,
  REQUEST_ID_HEADER,
  requestContext,
  requestIdMiddleware,
  resolveRequestId,
  saneRequestId,
} from './request-context';
export type { RequestContext } from './request-context';
export { matchedRoute } from './http-middleware.types';
export type { HttpMiddleware, HttpNext } from './http-middleware.types';
export { createMetrics, UNMATCHED_ROUTE } from './metrics';
export type { BusOutcome, CreateMetricsOptions, HttpMetricsOptions, StackMetrics } from './metrics';
export {
  currentTraceId,
  extractTraceContext,
  initTracing,
  injectTraceHeaders,
  SpanKind,
  SpanStatusCode,
  tracingMiddleware,
  withSpan,
} from './tracing';
export type { Context, InitTracingOptions, Span, SpanExporter, TraceCarrier, TracingHandle, TracingMiddlewareOptions, WithSpanOptions } from './tracing';
export { randomId } from './random-id';
export { HealthRegistry } from './health-registry';
export type { HealthCheck, HealthCheckOptions, HealthCheckResult, HealthRegistryOptions, HealthReport } from './health-registry';
