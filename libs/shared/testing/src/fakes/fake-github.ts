/**
 * A GitHub-like upstream on loopback for the credential proxy's tests and benchmark. Bearer auth
 * (a static token or one issued by a mounted FakeOAuthProvider), `GET /user`, issues paginated
 * with RFC 8288 Link headers, `POST` creating issues (counted, for idempotency), an echo of what
 * arrived (the proxy must scrub the credential it injected), a slow endpoint, one that never
 * answers, a failing one, a redirect to the metadata address and an 11 MB answer. Every request
 * is recorded as it arrived (method, raw target, headers, body).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { FakeOAuthProvider } from './fake-oauth-provider';

export interface RecordedRequest {
  method: string;
  /** The request target exactly as received. */
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface FakeGitHubOptions {
  /** Tokens accepted as `Authorization: Bearer …`. */
  tokens?: string[];
  oauth?: FakeOAuthProvider;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface FakeGitHub {
  url: string;
  port: number;
  requests: RecordedRequest[];
  issuesCreated: number;
  /** Connections currently open to it (the hang test checks the proxy let go). */
  openSockets(): number;
  close(): Promise<void>;
}

const PER_PAGE = 2;
const ISSUES = [1, 2, 3, 4, 5].map((n) => ({ number: n, title: `Issue ${n}` }));

export async function startFakeGitHub(options: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const tokens = new Set(options.tokens ?? []);
  const sockets = new Set<import('node:net').Socket>();
  const state: FakeGitHub = {
    url: '',
    port: 0,
    requests: [],
    issuesCreated: 0,
    openSockets: () => sockets.size,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const authorised = (req: IncomingMessage): boolean => {
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return false;
    return tokens.has(m[1]!) || Boolean(options.oauth?.isValid(m[1]!));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, body: Buffer): Promise<void> => {
    if (options.oauth && (await options.oauth.handle(req, res, body))) return;
    const url = new URL(req.url ?? '/', state.url);
    const json = (status: number, value: unknown, headers: Record<string, string> = {}): void => void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers }).end(JSON.stringify(value));
    // Unauthenticated on purpose: the proxy's own refusals must happen before any byte leaves.
    if (url.pathname === '/hang') return; // never answers
    if (url.pathname === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      return;
    }
    if (!authorised(req)) {
      json(401, { message: 'Bad credentials' });
      return;
    }
    if (url.pathname === '/user') return json(200, { login: 'octocat', id: 1 });
    if (url.pathname === '/echo' || url.pathname.startsWith('/echo/')) {
      return json(200, { method: req.method, url: req.url, headers: req.headers, body: body.toString('utf8') });
    }
    if (url.pathname === '/slow') {
      // Like a real server, stop working on a request whose client went away (a cancelled call).
      const gone = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(false), Number(url.searchParams.get('ms') ?? '1000'));
        res.once('close', () => {
          clearTimeout(t);
          r(true);
        });
      });
      if (gone) return;
      return json(200, { slow: true });
    }
    if (url.pathname === '/fail') return json(500, { message: 'Server Error' });
    if (url.pathname === '/big') {
      const size = Number(url.searchParams.get('bytes') ?? 11 * 1024 * 1024);
      res.writeHead(200, { 'content-type': 'text/plain' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          const part = chunk.subarray(0, Math.min(chunk.length, size - sent));
          sent += part.length;
          if (!res.write(part)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => (sent = size));
      pump();
      return;
    }
    const issues = /^\/repos\/([^/]+)\/([^/]+)\/issues$/.exec(url.pathname);
    if (issues && req.method === 'GET') {
      const page = Math.max(1, Number(url.searchParams.get('page') ?? '1'));
      const last = Math.ceil(ISSUES.length / PER_PAGE);
      const link = (p: number, rel: string) => `<${state.url}${url.pathname}?page=${p}>; rel="${rel}"`;
      const links = [page < last ? link(page + 1, 'next') : '', link(last, 'last'), page > 1 ? link(page - 1, 'prev') : ''].filter(Boolean);
      return json(200, ISSUES.slice((page - 1) * PER_PAGE, page * PER_PAGE), { link: links.join(', ') });
    }
    if (issues && req.method === 'POST') {
      state.issuesCreated++;
      const input = body.length ? (JSON.parse(body.toString('utf8')) as Record<string, unknown>) : {};
      return json(201, { number: 100 + state.issuesCreated, ...input });
    }
    json(404, { message: 'Not Found' });
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      state.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: body.toString('utf8') });
      handle(req, res, body).catch(() => res.writeHead(500).end());
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, options.host ?? '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  state.port = port;
  state.url = `http://${options.host ?? '127.0.0.1'}:${port}`;
  return state;
}
