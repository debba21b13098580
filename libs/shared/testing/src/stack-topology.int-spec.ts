// The harness's wiring, checked with a stand-in for STACK's entry point (the real one is exercised
// by the e2e suites): what each process is given, how the proxy reaches them, and what stop() cleans.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { connect, type JetStreamManager } from 'nats';
import { Client } from 'pg';

import { streamName } from '@stack/contracts';

import { startDistributedStack, startOneProcessStack } from './stack-topology';
import type { DistributedStack } from './stack-topology';
import { TEST_NATS_URL, TEST_POSTGRES_URL, uniqueName } from './servers';

interface Seen {
  services: string;
  instance: string;
  port: string;
  publicUrl: string;
  env: Record<string, string | null>;
  forwardedFor: string | null;
}

/** Serves like STACK would: `migrate` writes a marker table; serving answers /readyz only once it exists. */
const FAKE_STACK = `
const http = require('node:http');
const { Client } = require(process.env.FAKE_PG_MODULE);
const NAMES = ['DATABASE_URL', 'NATS_URL', 'REDIS_URL', 'STACK_BUS_PREFIX', 'STACK_INTERNAL_SECRET', 'STACK_MASTER_KEYS',
  'STACK_MIGRATE_ON_START', 'STACK_DATA_DIR', 'STACK_TRUSTED_PROXIES', 'HOST', 'LOG_LEVEL', 'NODE_ENV', 'DEVELOPER_LEAK', 'EXTRA'];
async function db(sql) {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  try { return await c.query(sql); } finally { await c.end(); }
}
if (process.argv[2] === 'migrate') {
  db('CREATE TABLE fake_migrated (at timestamptz DEFAULT now())').then(() => { console.log('migrated'); process.exit(0); },
    (e) => { console.error('migrate failed: ' + e.message); process.exit(1); });
} else {
  const server = http.createServer(async (req, res) => {
    if (req.url === '/readyz') {
      let ok = true;
      if (process.env.DATABASE_URL) ok = await db('SELECT 1 FROM fake_migrated').then(() => true, () => false);
      res.statusCode = ok ? 200 : 503;
      return res.end();
    }
    const env = {};
    for (const n of NAMES) env[n] = process.env[n] ?? null;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ services: process.env.STACK_SERVICES, instance: process.env.STACK_INSTANCE_ID ?? '', port: process.env.PORT,
      publicUrl: process.env.STACK_PUBLIC_URL, env, forwardedFor: req.headers['x-forwarded-for'] ?? null }));
  });
  server.listen(Number(process.env.PORT), process.env.HOST, () => console.log('serving ' + process.env.STACK_SERVICES + ' secret=' + process.env.STACK_INTERNAL_SECRET));
  process.on('SIGTERM', () => { console.log('draining'); server.close(() => process.exit(0)); });
}
`;

async function databaseExists(name: string): Promise<boolean> {
  const c = new Client({ connectionString: TEST_POSTGRES_URL });
  await c.connect();
  try {
    return (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
  } finally {
    await c.end();
  }
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  return jsm.streams.info(name).then(
    () => true,
    () => false,
  );
}

async function seen(url: string): Promise<Seen> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  return (await res.json()) as Seen;
}

describe('stack topology (with a stand-in entry point)', () => {
  let entry: string;
  let stack: DistributedStack | undefined;
  const previousPgModule = process.env.FAKE_PG_MODULE;

  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'fake-stack-'));
    entry = join(dir, 'main.js');
    writeFileSync(entry, FAKE_STACK);
    process.env.FAKE_PG_MODULE = require.resolve('pg');
    // Must not reach the processes: the harness hands them only what it means to.
    process.env.DATABASE_URL = 'postgres://developer-shell/should-not-leak';
    process.env.STACK_MASTER_KEYS = 'dev:leak';
  });
  afterAll(() => {
    delete process.env.DATABASE_URL;
    delete process.env.STACK_MASTER_KEYS;
    if (previousPgModule === undefined) delete process.env.FAKE_PG_MODULE;
  });
  afterEach(async () => {
    await stack?.stop();
    stack = undefined;
  });

  it('migrates once, starts one process per replica behind the proxy, and stop() cleans up', async () => {
    stack = await startDistributedStack({ entry, replicas: { passport: 2 }, env: { EXTRA: 'x' } });
    const s = stack;
    expect(s.processes.map((p) => p.instanceId)).toEqual(['auth-1', 'mcp-gateway-1', 'credential-proxy-1', 'passport-1', 'passport-2', 'skill-runner-1', 'audit-1']);
    expect(await databaseExists(s.database.name)).toBe(true);

    const audit = await seen(`${s.publicUrl}/v1/audit`);
    expect(audit.services).toBe('audit');
    expect(audit.publicUrl).toBe(s.publicUrl);
    expect(audit.env).toMatchObject({
      DATABASE_URL: s.database.url,
      NATS_URL: s.natsUrl,
      REDIS_URL: s.redisUrl,
      STACK_BUS_PREFIX: s.busPrefix,
      STACK_INTERNAL_SECRET: s.internalSecret,
      STACK_MASTER_KEYS: s.masterKeys,
      STACK_MIGRATE_ON_START: 'false',
      HOST: '127.0.0.1',
      EXTRA: 'x',
    });
    expect(Buffer.from(s.internalSecret, 'base64')).toHaveLength(32);
    expect(s.masterKeys).toMatch(/^k1:[A-Za-z0-9+/]{43}=$/);
    expect(audit.forwardedFor).toBe('127.0.0.1');

    const gateway = await seen(`${s.publicUrl}/mcp`);
    expect(gateway.services).toBe('mcp-gateway');
    const auth = await seen(`${s.publicUrl}/oauth/token`);
    expect(auth.services).toBe('auth');
    expect(auth.env.STACK_INTERNAL_SECRET).toBe(audit.env.STACK_INTERNAL_SECRET);

    const instances = new Set<string>();
    for (let i = 0; i < 4; i += 1) instances.add((await seen(`${s.publicUrl}/v1/passports`)).instance);
    expect([...instances].sort()).toEqual(['passport-1', 'passport-2']);
    const passportUrls = s.processes.filter((p) => p.service === 'passport').map((p) => p.url);
    expect(passportUrls.map((u) => s.proxy.hits()[u])).toEqual([2, 2]);

    // Every process is reachable directly too, on its own port.
    const direct = await seen(`${s.processes[0].url}/anything`);
    expect(direct.instance).toBe('auth-1');
    expect(s.logs()).toEqual(expect.arrayContaining(['migrated', `serving audit secret=${s.internalSecret}`]));

    // The run's JetStream streams go with it; another run's (another prefix) stay.
    const nc = await connect({ servers: TEST_NATS_URL });
    const other = uniqueName('other');
    try {
      const jsm = await nc.jetstreamManager();
      const exists = (name: string) => streamExists(jsm, name);
      await jsm.streams.add({ name: streamName(s.busPrefix, 'AUDIT'), subjects: [`${s.busPrefix}.topology.audit`] });
      await jsm.streams.add({ name: streamName(s.busPrefix, 'EVENTS'), subjects: [`${s.busPrefix}.topology.events`] });
      await jsm.streams.add({ name: streamName(other, 'AUDIT'), subjects: [`${other}.topology.audit`] });

      await s.stop();
      expect(await exists(streamName(s.busPrefix, 'AUDIT'))).toBe(false);
      expect(await exists(streamName(s.busPrefix, 'EVENTS'))).toBe(false);
      expect(await exists(streamName(other, 'AUDIT'))).toBe(true);
    } finally {
      await (await nc.jetstreamManager()).streams.delete(streamName(other, 'AUDIT')).catch(() => undefined);
      await nc.close();
    }
    expect(s.processes.every((p) => !p.process.running())).toBe(true);
    expect(s.processes[0].process.logs()).toContain('draining');
    expect(await databaseExists(s.database.name)).toBe(false);
    const after = await fetch(`${s.publicUrl}/v1/audit`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(after).toBe('refused');
  });

  it('replaces a replica without the proxy sending it traffic once it is taken out', async () => {
    stack = await startDistributedStack({ entry, services: ['credential-proxy'], replicas: { 'credential-proxy': 2 } });
    const [first, second] = stack.processes;
    expect(await stack.removeReplica(first)).toBe(0);
    for (let i = 0; i < 3; i += 1) expect((await seen(`${stack.publicUrl}/v1/proxy`)).instance).toBe(second.instanceId);
    const third = await stack.addReplica('credential-proxy');
    expect(third.instanceId).toBe('credential-proxy-3');
    const instances = new Set<string>();
    for (let i = 0; i < 4; i += 1) instances.add((await seen(`${stack.publicUrl}/v1/proxy`)).instance);
    expect([...instances].sort()).toEqual(['credential-proxy-2', 'credential-proxy-3']);
  });

  it('reports which process failed and why when one never becomes ready', async () => {
    await expect(startDistributedStack({ entry, services: ['audit'], serviceEnv: { audit: { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/nope_does_not_exist' } }, readyTimeoutMs: 1500 })).rejects.toThrow(
      /1 of 1 STACK processes did not become ready[\s\S]*audit-1[\s\S]*serving audit/,
    );
  });

  it('starts the one-process shape embedded: no database, bus or cache URL, its own data dir', async () => {
    const one = await startOneProcessStack({ entry });
    try {
      const s = await seen(`${one.publicUrl}/v1/anything`);
      expect(s.services).toBe('all');
      expect(s.publicUrl).toBe(one.publicUrl);
      expect(s.env).toMatchObject({ DATABASE_URL: null, NATS_URL: null, REDIS_URL: null, STACK_MASTER_KEYS: null, STACK_DATA_DIR: one.dataDir });
    } finally {
      await one.stop();
    }
  });
});
