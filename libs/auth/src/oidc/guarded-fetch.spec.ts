import { createGuardedFetch } from './guarded-fetch';

describe('guarded fetch (client metadata documents)', () => {
  const guarded = createGuardedFetch({ privateAllowlist: [] });

  it.each(['https://127.0.0.1/doc', 'https://10.1.2.3/doc', 'https://169.254.169.254/latest/meta-data', 'https://[::1]/doc', 'https://[::ffff:10.0.0.1]/doc', 'https://100.64.0.1/doc', 'https://[fd00::1]/doc',
    // The proxy's list, shared: IPv4-compatible, site-local, IETF-reserved, and any translated address (public or not).
    'https://[::7f00:1]/doc', 'https://[fec0::1]/doc', 'https://[2001:2::1]/doc', 'https://[::ffff:8.8.8.8]/doc', 'https://[64:ff9b::808:808]/doc', 'https://metadata.google.internal/computeMetadata/v1/'])(
    'refuses %s before connecting',
    async (url) => {
      await expect(guarded(url)).rejects.toThrow(/special-use/);
    },
  );

  it('refuses plain http', async () => {
    await expect(guarded('http://example.com/doc')).rejects.toThrow(/only https/);
  });

  it('lets the allowlist open a private range (the connection then fails on its own)', async () => {
    const open = createGuardedFetch({ privateAllowlist: ['127.0.0.1/32'], timeoutMs: 1000 });
    await expect(open('https://127.0.0.1:1/doc')).rejects.toThrow(/ECONNREFUSED/);
  });
});
