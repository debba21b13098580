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
