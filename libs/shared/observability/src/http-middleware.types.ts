/**
 * The shape of an Express-compatible middleware, written against Node's own http types so this
 * library does not depend on Express; Express (and Nest on Express) accept these functions as
 * they are, because their request and response extend Node's.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type HttpNext = (err?: unknown) => void;

export type HttpMiddleware = (req: IncomingMessage, res: ServerResponse, next: HttpNext) => void;

/**
 * The route pattern Express matched (`/v1/agents/:id`), including the mount path, or undefined.
 * Metrics and span names use the pattern, never the raw path, to keep label values bounded.
 */
export function matchedRoute(req: IncomingMessage): string | undefined {
  const { route, baseUrl } = req as IncomingMessage & { route?: { path?: unknown }; baseUrl?: unknown };
  const path = route?.path;
  if (typeof path !== 'string') return undefined;
  const base = typeof baseUrl === 'string' ? baseUrl : '';
  return `${base}${path}` || '/';
}
