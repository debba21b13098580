/**
 * An MCP client's Client ID Metadata Document host on loopback, over HTTPS with a self-signed
 * certificate made for the test (openssl). A STACK process trusts it through
 * NODE_EXTRA_CA_CERTS=<certFile> and reaches it through STACK_PROXY_PRIVATE_ALLOWLIST=127.0.0.1/32.
 * It counts fetches, so a test can see the cache at work.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ClientMetadataServer {
  /** `https://localhost:<port>`. */
  origin: string;
  /** The PEM certificate to trust (NODE_EXTRA_CA_CERTS). */
  certFile: string;
  /** Serves `document(clientId)` at `path`; the client_id is the document's own URL. */
  publish(path: string, document: (clientId: string) => Record<string, unknown>): string;
  fetches(path: string): number;
  stop(): Promise<void>;
}

export async function startClientMetadataServer(): Promise<ClientMetadataServer> {
  const dir = mkdtempSync(join(tmpdir(), 'stack-cimd-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], {
    stdio: 'ignore',
  });
  const documents = new Map<string, Record<string, unknown>>();
  const counts = new Map<string, number>();
  const server: Server = createServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const doc = documents.get(path);
    if (!doc) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' }).end(JSON.stringify(doc));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `https://localhost:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    certFile,
    publish(path, document) {
      const clientId = `${origin}${path}`;
      documents.set(path, document(clientId));
      return clientId;
    },
    fetches: (path) => counts.get(path) ?? 0,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        rmSync(dir, { recursive: true, force: true });
      }),
  };
}
