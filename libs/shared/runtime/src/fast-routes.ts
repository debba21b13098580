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
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

import { StackError } from '@stack/contracts';
import type { HttpMiddleware, StackLogger } from '@stack/observability';

import { writeError, writeJson } from './stack-error.filter';

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

export interface ReadRawBodyOptions {
  /** Decode gzip, deflate and br per Content-Encoding (others refused). Default: the bytes as sent. */
  decompress?: boolean;
  /** The error past the limit; default PAYLOAD_TOO_LARGE "request body is too large". */
  tooLarge?: () => StackError;
}

/**
 * A request body's bytes, up to `limitBytes`. A body refused half-way (too large, bad
 * compression) is read to its end and dropped rather than destroyed, so the answer reaches the
 * client and the connection can carry the next request; an upload the client aborts rejects
 * instead of hanging.
 */
export function readRawBody(req: IncomingMessage, limitBytes: number, options: ReadRawBodyOptions = {}): Promise<Buffer> {
  const tooLarge = options.tooLarge ?? (() => new StackError('PAYLOAD_TOO_LARGE', 'request body is too large'));
  if (Number(req.headers['content-length']) > limitBytes) return Promise.reject(tooLarge());
  // Its 'end' and 'close' have been and gone: waiting for them would hold the request (and what it holds) forever.
  if (req.readableEnded) return Promise.reject(new Error('readRawBody: the request body was already read'));
  if (req.destroyed) return Promise.reject(abortedUpload());
  let inflater: Transform | undefined;
  if (options.decompress) {
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding === 'gzip') inflater = createGunzip();
    else if (encoding === 'deflate') inflater = createInflate();
    else if (encoding === 'br') inflater = createBrotliDecompress();
    else if (encoding !== 'identity') return Promise.reject(new StackError('INVALID_REQUEST', `unsupported content encoding "${encoding.slice(0, 32)}"`));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const source: NodeJS.ReadableStream = inflater ?? req;
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const cleanup = () => {
      source.removeListener('data', onData);
      source.removeListener('end', onEnd);
      source.removeListener('error', onBroken);
      req.removeListener('error', onBroken);
      req.removeListener('close', onClose);
    };
    const fail = (err: StackError) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (inflater) {
        req.unpipe(inflater);
        inflater.destroy();
      }
      // The rest of the body is read and dropped, so the connection can carry the next request.
      req.on('error', () => undefined);
      req.resume();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) return fail(tooLarge());
      chunks.push(chunk);
    };
    const onBroken = () => fail(abortedUpload());
    const onClose = () => {
      if (!req.complete) onBroken();
    };
    const onEnd = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onBroken);
    req.once('error', onBroken);
    req.once('close', onClose);
    if (inflater) req.pipe(inflater);
  });
}

function abortedUpload(): StackError {
  return new StackError('INVALID_REQUEST', 'request body could not be read (bad compression or an aborted upload)');
}

/** The JSON body limit of every route, Express's and the lean lane's. */
export const JSON_BODY_LIMIT_BYTES = 2 * 1024 * 1024;

const JSON_TYPE = /^application\/json\s*(;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)"?/i;
const FIRST_CHAR = /^[\x20\x09\x0a\x0d]*(.)/s;

/**
 * The request body as the runtime's JSON parser (express.json) gives it to a controller: parsed
 * when the content type is `application/json` (an empty body is `{}`; otherwise strict — an
 * object or an array), `undefined` for any other type; gzip, deflate and br decoded; a charset
 * other than UTF-8 refused. Too large → PAYLOAD_TOO_LARGE, malformed → INVALID_REQUEST, with the
 * parser's messages.
 */
export async function readJsonBody(req: IncomingMessage, limitBytes: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!JSON_TYPE.test(type)) {
    req.resume();
    return undefined;
  }
  const charset = CHARSET.exec(type)?.[1]?.toLowerCase();
  if (charset && charset !== 'utf-8' && charset !== 'utf8') throw new StackError('INVALID_REQUEST', `unsupported charset "${charset.slice(0, 32).toUpperCase()}"`);
  const text = (await readRawBody(req, limitBytes, { decompress: true })).toString('utf8');
  if (text.length === 0) return {};
  const first = FIRST_CHAR.exec(text)?.[1];
  if (first !== '{' && first !== '[') throw new StackError('INVALID_REQUEST', 'request body is not valid JSON');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StackError('INVALID_REQUEST', 'request body is not valid JSON');
  }
}

interface CompiledRoute {
  route: FastRoute;
  segments: readonly string[];
  /** What Express would have set on the request (`req.route`): metrics and spans name the route by its pattern. */
  expressRoute: { path: string };
}

function compile(route: FastRoute): CompiledRoute {
  return { route, segments: route.path.split('/'), expressRoute: { path: route.path } };
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

/**
 * Puts `routes` in front of the server's request listener (Express): a request whose method and
 * path match one is served through `middlewares` and its handler; anything else goes on to
 * Express untouched.
 */
export function installFastRoutes(server: Server, routes: readonly FastRoute[], middlewares: readonly HttpMiddleware[], logger: StackLogger): void {
  if (routes.length === 0) return;
  const exact = new Map<string, CompiledRoute>();
  const patterns = new Map<string, CompiledRoute[]>();
  for (const r of routes) {
    if (!r.path.includes('/:')) exact.set(`${r.method} ${r.path}`, compile(r));
    else patterns.set(r.method, [...(patterns.get(r.method) ?? []), compile(r)]);
  }
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) throw new Error(`installFastRoutes expects one request listener on the server, found ${listeners.length}`);
  const fallback = listeners[0]!;

  const serve = ({ route, expressRoute }: CompiledRoute, params: Record<string, string>, query: string, req: IncomingMessage, res: ServerResponse) => {
    Object.assign(req, { route: expressRoute, baseUrl: '' });
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
      route
        .handle(req, res, { params, query: new URLSearchParams(query) })
        .then((answer) => writeJson(res, answer.status, answer.body))
        .catch((e: unknown) => {
          // Answered before the whole body was read: the connection is not reused for another request.
          if (!req.complete && !res.headersSent) res.setHeader('Connection', 'close');
          writeError(res, e, logger);
        });
    };
    next();
  };

  const listener: RequestListener = (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? '' : url.slice(q + 1);
    const route = exact.get(`${req.method} ${path}`);
    if (route) return serve(route, {}, query, req, res);
    const candidates = patterns.get(req.method ?? '');
    if (candidates) {
      const parts = path.split('/');
      for (const c of candidates) {
        const params = matchSegments(c.segments, parts);
        if (params) return serve(c, params, query, req, res);
      }
    }
    fallback(req, res);
  };
  server.removeListener('request', fallback);
  server.on('request', listener);
}
