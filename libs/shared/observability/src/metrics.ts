/**
 * Prometheus metrics for one process: Node's defaults plus STACK's HTTP, bus and outbox series,
 * served as text on `/metrics`. Series names are part of the operations contract (dashboards and
 * alerts read them): rename none.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import { type HttpMiddleware, type HttpNext, matchedRoute } from './http-middleware.types';

export interface CreateMetricsOptions {
  /** Added as a `service` label to every series; omit in the one-process mode (it runs them all). */
  service?: string;
  instance: string;
  /** Node's process metrics (default true). */
  defaultMetrics?: boolean;
}

export interface HttpMetricsOptions {
  /** How to name a request's route; default: the pattern Express matched. */
  routeOf?: (req: IncomingMessage) => string | undefined;
}

/** Outcome label values the bus library records; free-form, but keep them few. */
export type BusOutcome = 'ok' | 'error' | 'timeout' | 'no_responders' | 'invalid' | 'duplicate' | (string & {});

export interface StackMetrics {
  readonly registry: Registry;
  readonly httpRequestsTotal: Counter<'method' | 'route' | 'status'>;
  readonly httpRequestDuration: Histogram<'method' | 'route' | 'status'>;
  readonly busRequestsTotal: Counter<'subject' | 'outcome'>;
  readonly busRequestDuration: Histogram<'subject' | 'outcome'>;
  readonly busHandledTotal: Counter<'subject' | 'outcome'>;
  readonly outboxPending: Gauge;
  readonly outboxPublishedTotal: Counter;
  /** A bus request this process sent, finished with `outcome` after `seconds`. */
  recordBusRequest(subject: string, outcome: BusOutcome, seconds: number): void;
  /** A bus message this process handled. */
  recordBusHandled(subject: string, outcome: BusOutcome): void;
  /** Express-compatible middleware counting and timing every HTTP request. */
  httpMiddleware(options?: HttpMetricsOptions): HttpMiddleware;
  /** What `/metrics` answers. */
  render(): Promise<{ contentType: string; body: string }>;
}

export const UNMATCHED_ROUTE = 'unmatched';

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BUS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function createMetrics(options: CreateMetricsOptions): StackMetrics {
  if (typeof options.instance !== 'string' || options.instance.length === 0) {
    throw new Error('createMetrics: instance must be a non-empty string');
  }
  const registry = new Registry();
  registry.setDefaultLabels(options.service ? { service: options.service, instance: options.instance } : { instance: options.instance });
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const httpRequestsTotal = new Counter({
    name: 'stack_http_requests_total',
    help: 'HTTP requests served, by method, route pattern and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    registers,
  });
  const httpRequestDuration = new Histogram({
    name: 'stack_http_request_duration_seconds',
    help: 'Time from receiving an HTTP request to finishing its response.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers,
  });
  const busRequestsTotal = new Counter({
    name: 'stack_bus_requests_total',
    help: 'Bus requests sent, by subject and outcome.',
    labelNames: ['subject', 'outcome'] as const,
    registers,
  });
  const busRequestDuration = new Histogram({
    name: 'stack_bus_request_duration_seconds',
    help: 'Round trip of bus requests sent, by subject and outcome.',
    labelNames: ['subject', 'outcome'] as const,
    buckets: BUS_BUCKETS,
    registers,
  });
  const busHandledTotal = new Counter({
    name: 'stack_bus_handled_total',
    help: 'Bus messages handled, by subject and outcome.',
    labelNames: ['subject', 'outcome'] as const,
    registers,
  });
  const outboxPending = new Gauge({
    name: 'stack_outbox_pending',
    help: 'Outbox rows written but not yet published.',
    registers,
  });
  const outboxPublishedTotal = new Counter({
    name: 'stack_outbox_published_total',
    help: 'Outbox rows published to JetStream.',
    registers,
  });

  return {
    registry,
    httpRequestsTotal,
    httpRequestDuration,
    busRequestsTotal,
    busRequestDuration,
    busHandledTotal,
    outboxPending,
    outboxPublishedTotal,
    recordBusRequest(subject, outcome, seconds) {
      busRequestsTotal.inc({ subject, outcome });
      busRequestDuration.observe({ subject, outcome }, seconds);
    },
    recordBusHandled(subject, outcome) {
      busHandledTotal.inc({ subject, outcome });
    },
    httpMiddleware(middlewareOptions = {}) {
      const routeOf = middlewareOptions.routeOf ?? matchedRoute;
      return (req: IncomingMessage, res: ServerResponse, next: HttpNext) => {
        const started = process.hrtime.bigint();
        let recorded = false;
        const record = () => {
          if (recorded) return;
          recorded = true;
          const method = KNOWN_METHODS.has(req.method ?? '') ? (req.method as string) : 'OTHER';
          // 499 (nginx's convention): the client went away before the response was finished.
          const status = res.writableFinished ? String(res.statusCode) : '499';
          const labels = { method, route: routeOf(req) ?? UNMATCHED_ROUTE, status };
          httpRequestsTotal.inc(labels);
          httpRequestDuration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
        };
        res.once('finish', record);
        res.once('close', record);
        next();
      };
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
