import { createServer } from 'node:net';

import { freePort } from './free-port';

describe('freePort', () => {
  it('returns a loopback port that can be listened on at once', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(1024);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
