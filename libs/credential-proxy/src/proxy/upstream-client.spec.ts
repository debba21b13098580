import { createServer } from 'node:net';

import { causeCode } from './cause-code';
import { UpstreamClient } from './upstream-client';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('upstream client failures', () => {
  it('keeps the generic message and puts the connection error code in the details', async () => {
    const client = new UpstreamClient();
    try {
      const port = await closedPort();
      await expect(
        client.send({ origin: `http://127.0.0.1:${port}`, address: { address: '127.0.0.1', family: 4 }, method: 'GET', target: '/', headers: {}, timeoutMs: 2000, maxBytes: 1024, overflow: 'refuse' }),
      ).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', message: 'the upstream connection failed', details: { cause_code: 'ECONNREFUSED' } });
    } finally {
      await client.close();
    }
  });

  it('reads a code on the error or its cause, and nothing that is not code-shaped', () => {
    expect(causeCode(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe('ECONNRESET');
    expect(causeCode(new TypeError('fetch failed', { cause: Object.assign(new Error('y'), { code: 'UND_ERR_SOCKET' }) }))).toBe('UND_ERR_SOCKET');
    expect(causeCode(Object.assign(new Error('z'), { code: 'not a code: Bearer abc' }))).toBeUndefined();
    expect(causeCode(Object.assign(new Error('z'), { code: 23 }))).toBeUndefined();
    expect(causeCode('ECONNREFUSED')).toBeUndefined();
    expect(causeCode(undefined)).toBeUndefined();
  });
});
