import { randomBytes } from 'node:crypto';

import { ConfigError, loadConfig, secretValues } from './load-config';

const secret = randomBytes(32).toString('base64');
const master = `k1:${randomBytes(32).toString('base64')}`;

function problemsOf(env: Record<string, string>): { variable: string; message: string }[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('gives the one-process defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c.publicUrl).toBe('http://localhost:8080');
    expect(c.port).toBe(8080);
    expect(c.host).toBe('127.0.0.1');
    expect(c.services).toEqual(['auth', 'mcp-gateway', 'credential-proxy', 'passport', 'skill-runner', 'audit']);
    expect(c.busPrefix).toBe('stack');
    expect(c.databaseUrl).toBeUndefined();
    expect(c.migrateOnStart).toBe(true);
  });

  it('parses a distributed process configuration', () => {
    const c = loadConfig({
      STACK_SERVICES: 'audit, passport',
      DATABASE_URL: 'postgres://u:p@db:5432/stack',
      NATS_URL: 'nats://a:4222,nats://b:4222',
      REDIS_URL: 'redis://cache:6379',
      STACK_INTERNAL_SECRET: secret,
      STACK_MASTER_KEYS: master,
      STACK_PUBLIC_URL: 'https://stack.example.com/',
      PORT: '3000',
      STACK_TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8',
      STACK_MIGRATE_ON_START: 'false',
    });
    expect(c.services).toEqual(['passport', 'audit']);
    expect(c.publicUrl).toBe('https://stack.example.com');
    expect(c.port).toBe(3000);
    expect(c.trustedProxies).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(c.migrateOnStart).toBe(false);
  });

  it.each([
    ['PORT', { PORT: 'eighty' }, /whole number/],
    ['PORT', { PORT: '70000' }, /0 to 65535/],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://x' }, /postgres:\/\//],
    ['STACK_PUBLIC_URL', { STACK_PUBLIC_URL: 'https://x.example/base' }, /no path/],
    ['STACK_PUBLIC_URL', { STACK_PUBLIC_URL: 'not a url' }, /http:\/\//],
    ['STACK_SERVICES', { STACK_SERVICES: 'auth,billing', NATS_URL: 'nats://x:4222', DATABASE_URL: 'postgres://x/y', STACK_INTERNAL_SECRET: secret }, /"billing"/],
    ['STACK_BUS_PREFIX', { STACK_BUS_PREFIX: 'a.b' }, /letters, digits/],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }, /one of trace/],
    ['STACK_MASTER_KEYS', { STACK_MASTER_KEYS: 'k1:short' }, /32 bytes/],
    ['STACK_TRUSTED_PROXIES', { STACK_TRUSTED_PROXIES: '10.0.0.0/40' }, /CIDRs/],
    ['STACK_MIGRATE_ON_START', { STACK_MIGRATE_ON_START: 'maybe' }, /true or false/],
    ['NATS_URL', { STACK_SERVICES: 'audit', DATABASE_URL: 'postgres://x/y' }, /in-process bus/],
    ['STACK_INTERNAL_SECRET', { NATS_URL: 'nats://x:4222' }, /required when NATS_URL/],
  ])('names %s when it is wrong', (variable, env, message) => {
    const problems = problemsOf(env as Record<string, string>);
    const p = problems.find((x) => x.variable === variable);
    expect(p).toBeDefined();
    expect(p!.message).toMatch(message);
  });

  it('bounds the lifetime of a passport refresh lineage (STACK_PASSPORT_MAX_LIFETIME_SECONDS): 24 h by default, from the longest TTL to 30 days', () => {
    expect(loadConfig({}).passportMaxLifetimeMs).toBe(86_400_000);
    expect(loadConfig({ STACK_PASSPORT_MAX_LIFETIME_SECONDS: '3600' }).passportMaxLifetimeMs).toBe(3_600_000);
    expect(loadConfig({ STACK_PASSPORT_MAX_LIFETIME_SECONDS: '2592000' }).passportMaxLifetimeMs).toBe(2_592_000_000);
    for (const bad of ['3599', '60', '0', '2592001', '-1', '1.5', 'a day']) {
      expect({ bad, problems: problemsOf({ STACK_PASSPORT_MAX_LIFETIME_SECONDS: bad }) }).toEqual({ bad, problems: [{ variable: 'STACK_PASSPORT_MAX_LIFETIME_SECONDS', message: expect.stringMatching(/whole number from 3600 to 2592000/) }] });
    }
  });

  it('derives the public URL from PORT when it is unset', () => {
    expect(loadConfig({ PORT: '9090' }).publicUrl).toBe('http://localhost:9090');
  });

  it('reports every bad variable at once', () => {
    const problems = problemsOf({ PORT: 'x', LOG_LEVEL: 'y', STACK_BUS_PREFIX: '!' });
    expect(problems.map((p) => p.variable).sort()).toEqual(['LOG_LEVEL', 'PORT', 'STACK_BUS_PREFIX']);
  });

  it('refuses generated keys in production', () => {
    const problems = problemsOf({ NODE_ENV: 'production' });
    expect(problems.map((p) => p.variable)).toEqual(expect.arrayContaining(['STACK_MASTER_KEYS', 'STACK_INTERNAL_SECRET']));
  });

  describe('in production', () => {
    const production = { NODE_ENV: 'production', STACK_MASTER_KEYS: master, STACK_INTERNAL_SECRET: secret, STACK_PUBLIC_URL: 'https://stack.example.com' };

    it('accepts an https public origin, and plain http on loopback only', () => {
      for (const url of ['https://stack.example.com', 'http://127.0.0.1:8080', 'http://localhost:3000', 'http://stack.localhost', 'http://[::1]:8080']) {
        expect(loadConfig({ ...production, STACK_PUBLIC_URL: url }).publicUrl).toBe(new URL(url).origin);
      }
    });

    it('refuses a plain http public origin elsewhere: tokens, passwords and cookies would cross the network in clear', () => {
      for (const url of ['http://stack.example.com', 'http://10.0.0.5:8080', 'http://stack.localtest.me', 'http://[2001:db8::1]']) {
        const problems = problemsOf({ ...production, STACK_PUBLIC_URL: url });
        expect({ url, problems }).toEqual({ url, problems: [{ variable: 'STACK_PUBLIC_URL', message: expect.stringMatching(/https:\/\/ origin when NODE_ENV=production/) }] });
      }
      // Outside production a laptop or test cluster may use http.
      expect(loadConfig({ ...production, NODE_ENV: 'development', STACK_PUBLIC_URL: 'http://stack.localtest.me' }).publicUrl).toBe('http://stack.localtest.me');
    });

    it('refuses the http://localhost default: the issuer must be named', () => {
      const { STACK_PUBLIC_URL: _unset, ...rest } = production;
      expect(problemsOf(rest)).toEqual([{ variable: 'STACK_PUBLIC_URL', message: expect.stringMatching(/^required when NODE_ENV=production/) }]);
    });

    // The dev overlay's well-known values (k8s/overlays/dev/kustomization.yaml) and a zero key.
    const devMasterKeys = 'dev1:ZGV2LW9ubHktbWFzdGVyLWtleS0zMi1ieXRlcy0hISE=';
    const devInternalSecret = 'ZGV2LW9ubHktaW50ZXJuYWwtc2VjcmV0LTMyLWJ5dGVzIQ==';
    const zeroKey = Buffer.alloc(32).toString('base64');

    it.each([
      ['STACK_MASTER_KEYS', 'the dev overlay key', devMasterKeys],
      ['STACK_MASTER_KEYS', 'an all-zero key', `k0:${zeroKey}`],
      ['STACK_MASTER_KEYS', 'a passphrase behind a random current key', `${master},old:${Buffer.from('correct horse battery staple 32b').toString('base64')}`],
      ['STACK_INTERNAL_SECRET', 'the dev overlay secret', devInternalSecret],
      ['STACK_INTERNAL_SECRET', 'a repeated byte', Buffer.alloc(48, 7).toString('base64')],
    ])('refuses %s that is not random bytes (%s), without showing it', (variable, _what, value) => {
      const problems = problemsOf({ ...production, [variable]: value });
      expect(problems.map((p) => p.variable)).toEqual([variable]);
      expect(problems[0]!.message).toMatch(/expected random bytes/);
      for (const part of value.split(/[,:]/)) if (part.length > 8) expect(problems[0]!.message).not.toContain(part);
      // Not in development: the dev overlay runs with them.
      expect(() => loadConfig({ ...production, NODE_ENV: 'development', [variable]: value })).not.toThrow();
    });
  });

  it('refuses a master key id given twice, which would leave data keys wrapped by one of them unopenable', () => {
    const other = randomBytes(32).toString('base64');
    const problems = problemsOf({ STACK_MASTER_KEYS: `k1:${other},${master}` });
    expect(problems).toEqual([{ variable: 'STACK_MASTER_KEYS', message: expect.stringMatching(/"k1" appears twice/) }]);
    expect(problems[0]!.message).not.toContain(other);
  });

  it('never echoes a secret value in its error', () => {
    const bad = 'k1:c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0';
    try {
      loadConfig({ STACK_MASTER_KEYS: bad, DATABASE_URL: 'mysql://user:hunter2@db' });
      throw new Error('expected a ConfigError');
    } catch (err) {
      expect((err as Error).message).not.toContain('c2VjcmV0');
      expect((err as Error).message).not.toContain('hunter2');
      expect((err as Error).message).toContain('STACK_MASTER_KEYS');
    }
  });

  it('lists the secret values that logs must scrub', () => {
    const c = loadConfig({ STACK_MASTER_KEYS: master, STACK_INTERNAL_SECRET: secret, DATABASE_URL: 'postgres://u:pa%24%24word@db/x', REDIS_URL: 'redis://:redispass@r:6379' });
    const s = secretValues(c);
    expect(s).toEqual(expect.arrayContaining([master.split(':')[1], secret, 'pa$$word', 'redispass']));
  });
});
