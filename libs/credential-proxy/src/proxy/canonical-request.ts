/**
 * The canonical request (DESIGN.md §3, §5): the one form of a proxy call that constraints are
 * checked against and that is then forwarded byte for byte. Path segments are percent-decoded
 * exactly once, `.` and `..` (also spelled `%2e%2e`) resolved, an encoded `/` or `\` refused, and
 * so is `..;` (a dot segment with parameters, which servers that strip `;params` resolve);
 * duplicate query keys, header names or JSON keys refused; numbers that would not be forwarded
 * exactly refused; a body that looks like JSON read as JSON whatever its label; caller auth
 * headers, cookies, method/URL overrides and hop-by-hop headers dropped. Anything ambiguous is
 * refused rather than guessed.
 */
import { StackError } from '@stack/contracts';

import { DuplicateKeyError, isExactNumber, parseStrictJson, UnsafeNumberError } from './strict-json';

export interface RawProxyCall {
  method: string;
  url?: string;
  path?: string;
  query?: Record<string, string | number | boolean>;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface CanonicalRequest {
  method: string;
  /** `https://api.github.com` — scheme, host and port as forwarded. */
  origin: string;
  protocol: 'http:' | 'https:';
  /** Host as in a URL: hostname plus a non-default port. */
  host: string;
  /** Hostname without brackets (IPv6 literals bare). */
  hostname: string;
  port: number;
  /** Decoded, normalised path (`/repos/a b/x`). */
  pathname: string;
  /** The same path as forwarded (each segment percent-encoded). */
  encodedPath: string;
  /** Query parameters in order, decoded, keys unique. */
  query: Array<[string, string]>;
  /** Lower-case names, unique, caller auth and hop-by-hop headers removed. */
  headers: Record<string, string>;
  /** The parsed JSON body, when it is JSON (labelled so, or a `{` / `[` body whatever its label). */
  json?: unknown;
  /** Bytes to forward (undefined: no body). */
  body?: Buffer;
}

/** Headers a caller may never set: credentials, cookies, routing and framing. */
const DROPPED_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'cookie2',
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'forwarded',
  'via',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-real-ip',
  'proxy-connection',
  // Method and URL overrides: an upstream honouring them would act on another method or path than the one checked.
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
  // The proxy must see the answer's bytes to scrub the credential from them: no compression
  // (it asks for identity itself) and no byte ranges (a reflected secret fetched in slices).
  'accept-encoding',
  'range',
  'if-range',
]);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function refuse(message: string, details?: Record<string, unknown>): never {
  throw new StackError('INVALID_REQUEST', message, details);
}

function decodeOnce(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return refuse(`${what} has malformed percent-encoding`);
  }
}

/**
 * RFC 3986 pchar: unreserved, sub-delims but ';', ':' and '@' stay; everything else is encoded.
 * A ';' goes encoded: servers that strip `;params` from a segment (Tomcat, Jetty, Spring) would
 * route `/project;x/KEY` as `/project/KEY`, a path the scope rules and constraints never saw;
 * `%3B` is a plain character to every server.
 */
function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/%(3A|40|21|24|26|27|28|29|2A|2B|2C|3D)/g, (m) => decodeURIComponent(m));
}

export function normalisePath(rawPath: string): { pathname: string; encodedPath: string } {
  if (!rawPath.startsWith('/')) refuse('path must start with /');
  if (/[\\\0\r\n#]/.test(rawPath)) refuse('path contains a forbidden character');
  const out: string[] = [];
  const raw = rawPath.slice(1).split('/');
  raw.forEach((piece, index) => {
    const segment = decodeOnce(piece, 'path');
    if (/[/\\\0]/.test(segment)) refuse('path has an encoded separator', { segment: piece });
    // A segment that still holds an escape for '.', '/' or '\' after one decoding was encoded
    // twice: an upstream decoding again would see a different path than the one checked.
    if (/%(2e|2f|5c)/i.test(segment)) refuse('path is encoded more than once', { segment: piece });
    // Servers that strip `;params` from a segment (Tomcat, Jetty, Spring) resolve `..;` as `..`.
    const semi = segment.indexOf(';');
    if (semi >= 0 && (segment.slice(0, semi) === '.' || segment.slice(0, semi) === '..')) refuse('path has a dot segment with parameters', { segment: piece });
    if (segment === '.') {
      if (index === raw.length - 1) out.push('');
      return;
    }
    if (segment === '..') {
      if (out.length === 0) refuse('path climbs above its root');
      out.pop();
      if (index === raw.length - 1) out.push('');
      return;
    }
    out.push(segment);
  });
  return { pathname: `/${out.join('/')}`, encodedPath: `/${out.map(encodeSegment).join('/')}` };
}

function parseQueryString(search: string, into: Map<string, string>): void {
  if (!search) return;
  for (const part of search.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = decodeOnce((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '), 'query');
    const value = decodeOnce((eq < 0 ? '' : part.slice(eq + 1)).replace(/\+/g, ' '), 'query');
    if (into.has(key)) refuse(`duplicate query key '${key}'`);
    into.set(key, value);
  }
}

function isJsonContentType(type: string | undefined): boolean {
  const t = type?.trim().toLowerCase();
  return !t || /^application\/([\w.+-]*\+)?json\b/.test(t);
}

/** Upstreams such as GitHub parse a body as JSON whatever its content type: one that looks like JSON is read as JSON. */
const LOOKS_LIKE_JSON = /^\s*[{[]/;

function unsafeNumber(err: UnsafeNumberError): never {
  return refuse(`the body has a ${err.message}`);
}

/** A JSON value handed over already parsed (bus, REST envelope): its numbers must survive JSON.stringify too. */
function checkNumbers(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (!isExactNumber(v)) unsafeNumber(new UnsafeNumberError(String(v)));
    } else if (v !== null && typeof v === 'object') {
      for (const item of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) stack.push(item);
    }
  }
}

/**
 * @param base the connection's base URL (catalog or custom service, with any override applied)
 */
export function canonicalise(call: RawProxyCall, base: URL): CanonicalRequest {
  const method = call.method.toUpperCase();
  if (!TOKEN.test(method)) refuse('method is not a valid token');
  if ((call.url === undefined) === (call.path === undefined)) refuse('give exactly one of url or path');

  let target: URL;
  let rawPath: string;
  let search: string;
  let basePrefix = '';
  if (call.url !== undefined) {
    try {
      target = new URL(call.url);
    } catch {
      return refuse('url is not an absolute URL');
    }
    if (target.username || target.password) refuse('url must not carry credentials');
    if (target.hash) refuse('url must not carry a fragment');
    rawPath = target.pathname;
    search = target.search.slice(1);
  } else {
    const path = call.path!;
    if (!path.startsWith('/')) refuse('path must start with /');
    const q = path.indexOf('?');
    const own = q < 0 ? path : path.slice(0, q);
    search = q < 0 ? '' : path.slice(q + 1);
    const basePath = base.pathname.replace(/\/+$/, '');
    rawPath = `${basePath}${own}`;
    target = base;
    basePrefix = basePath;
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') refuse('only http and https URLs can be proxied');

  const { pathname, encodedPath } = normalisePath(rawPath);
  // A relative path may not climb out of the service's base path (`/api/v4/../../admin`).
  if (basePrefix && pathname !== basePrefix && !pathname.startsWith(`${basePrefix}/`)) refuse('path climbs above the service base path');
  const queryMap = new Map<string, string>();
  parseQueryString(search, queryMap);
  for (const [key, value] of Object.entries(call.query ?? {})) {
    if (queryMap.has(key)) refuse(`duplicate query key '${key}'`);
    if (typeof value === 'number' && !isExactNumber(value)) refuse(`query '${key}' is a number that would not be forwarded exactly (send it as a string)`);
    queryMap.set(key, String(value));
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(call.headers ?? {})) {
    const lower = name.toLowerCase();
    if (!TOKEN.test(lower)) refuse(`header name '${name}' is not a valid token`);
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) refuse(`header '${name}' has a forbidden character`);
    if (Object.prototype.hasOwnProperty.call(headers, lower)) refuse(`duplicate header '${lower}'`);
    if (DROPPED_HEADERS.has(lower) || lower.startsWith('proxy-') || lower.startsWith('sec-')) continue;
    headers[lower] = value;
  }

  let json: unknown;
  let body: Buffer | undefined;
  if (call.body !== undefined && call.body !== null) {
    if (method === 'GET' || method === 'HEAD') refuse(`${method} requests carry no body`);
    if (typeof call.body === 'string') {
      const labelled = isJsonContentType(headers['content-type']);
      if (labelled || LOOKS_LIKE_JSON.test(call.body)) {
        try {
          json = parseStrictJson(call.body);
        } catch (err) {
          if (err instanceof DuplicateKeyError) refuse(err.message);
          if (err instanceof UnsafeNumberError) unsafeNumber(err);
          // Not JSON under another label: forwarded as it is, and no body constraint can hold on it.
          if (labelled) refuse('body is not valid JSON (send another content-type for other bodies)');
        }
      }
      if (json === undefined) body = Buffer.from(call.body, 'utf8');
    } else {
      checkNumbers(call.body);
      json = call.body;
    }
    if (json !== undefined) {
      body = Buffer.from(JSON.stringify(json), 'utf8');
      headers['content-type'] ??= 'application/json';
    }
  }

  const port = target.port ? Number(target.port) : target.protocol === 'https:' ? 443 : 80;
  return {
    method,
    origin: target.origin,
    protocol: target.protocol as 'http:' | 'https:',
    host: target.host,
    hostname: target.hostname.replace(/^\[|\]$/g, ''),
    port,
    pathname,
    encodedPath,
    query: [...queryMap.entries()],
    headers,
    json,
    body,
  };
}

/** Path and query exactly as they go on the request line. */
export function requestTarget(req: CanonicalRequest, extraQuery: Array<[string, string]> = []): string {
  const all = [...req.query, ...extraQuery];
  if (all.length === 0) return req.encodedPath;
  return `${req.encodedPath}?${all.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`;
}
