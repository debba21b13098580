/**
 * A private nats-server that requires TLS on its client port, as the prod NATS chart values
 * configure it, with a certificate from a throwaway CA (made with the openssl CLI): the
 * image test uses it to show that STACK reaches a TLS NATS trusting only the platform CA
 * it is given through NODE_EXTRA_CA_CERTS, as the prod overlay mounts it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, startConfiguredNatsServer, type ManagedProcess } from '@stack/testing';

export interface TlsNats {
  /** `tls://127.0.0.1:<port>` */
  url: string;
  /** PEM of the CA that signed the server certificate (what the `stack-ca` Secret holds). */
  caFile: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

function openssl(args: readonly string[], cwd: string): void {
  const res = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (res.error) throw new Error(`the openssl CLI is needed to make test certificates: ${res.error.message}`);
  if (res.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${res.stderr}`);
}

export async function startTlsNats(): Promise<TlsNats> {
  const dir = mkdtempSync(join(tmpdir(), 'stack-tls-nats-'));
  chmodSync(dir, 0o755);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=stack-test-ca'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext'], dir);
  chmodSync(join(dir, 'ca.crt'), 0o644);
  const port = await freePort();
  const monitor = await freePort();
  writeFileSync(
    join(dir, 'nats.conf'),
    [
      `listen: 127.0.0.1:${port}`,
      `http: 127.0.0.1:${monitor}`,
      'max_payload: 1048576',
      `jetstream { store_dir: ${join(dir, 'store')} }`,
      `tls { cert_file: ${join(dir, 'server.crt')}, key_file: ${join(dir, 'server.key')}, timeout: 2 }`,
      '',
    ].join('\n'),
  );
  const nats = await startConfiguredNatsServer({ name: `tls-nats-${port}`, args: ['-c', join(dir, 'nats.conf')], monitorPort: monitor, dir });
  return {
    url: `tls://127.0.0.1:${port}`,
    caFile: join(dir, 'ca.crt'),
    process: nats.process,
    stop: () => nats.stop(),
  };
}
