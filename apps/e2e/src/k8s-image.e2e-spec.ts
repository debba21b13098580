/**
 * The container image without a Docker engine: the production bundle deploy/Dockerfile
 * builds (package.json, `npm ci --omit=dev`, dist/) assembled in a temporary directory,
 * made read-only, and run with the image's own commands as a non-root user against the real
 * Postgres and Redis and a NATS that requires TLS (as in prod): the migrations Job's
 * `migrate`, then the CMD with every service, ready on /readyz, and SIGTERM ending it with
 * exit code 0. The NATS certificate is trusted only through NODE_EXTRA_CA_CERTS, as the prod
 * overlay sets it; without it the process refuses the server.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createTestDatabase, ensureStackBuilt, freePort, generateStackSecrets, repoRoot, TEST_REDIS_URL, uniqueName, type TestDatabase } from '@stack/testing';

import { assembleBundle, makeReadOnly, makeWritable, runCommand, startBundle, type BundleProcess } from './support/k8s-bundle';
import { execForm, parseDockerfile } from './support/k8s-dockerfile';
import { startTlsNats, type TlsNats } from './support/k8s-tls-nats';
import { eventually } from './support/wait';

const dockerfile = parseDockerfile(readFileSync(join(repoRoot(), 'deploy/Dockerfile'), 'utf8'));
const runtime = dockerfile.stages[dockerfile.stages.length - 1];
const deps = dockerfile.stages.find((s) => s.name === 'deps')!;

/** The runtime stage's ENV, as the container starts with it. */
function imageEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of runtime.instructions.filter((x) => x.op === 'ENV')) {
    for (const pair of i.args.split(' ')) {
      const [k, ...v] = pair.split('=');
      if (k && v.length) env[k] = v.join('=');
    }
  }
  return env;
}

/** `npm ci …` of the deps stage, as an argument list for npm. */
function npmCiArgs(): string[] {
  const run = deps.instructions.find((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args))!.args;
  return run.slice(run.indexOf('npm ci') + 'npm '.length).split(' ').filter((a) => a && !a.startsWith('--no-audit') && !a.startsWith('--no-fund'));
}

/** What the build stage's `rm -rf dist/…` takes out of dist/ before the runtime stage copies it. */
function removedFromDist(): string[] {
  const build = dockerfile.stages.find((s) => s.name === 'build')!;
  const run = build.instructions.find((i) => i.op === 'RUN' && i.args.includes('tools/build.mjs'))!.args;
  const rm = /rm -rf ([^&;]+)/.exec(run)?.[1] ?? '';
  return rm.split(' ').filter((p) => p.startsWith('dist/')).map((p) => p.slice('dist/'.length));
}

describe('the production image, as a bundle started with its own command', () => {
  let bundle: string;
  let dataDir: string;
  let database: TestDatabase;
  let nats: TlsNats;
  let stack: BundleProcess | undefined;
  // The image's `node` user; root here can become it, another user runs as itself.
  const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;

  beforeAll(async () => {
    await ensureStackBuilt();
    bundle = await assembleBundle(npmCiArgs(), removedFromDist());
    makeReadOnly(bundle);
    dataDir = mkdtempSync(join(tmpdir(), 'stack-bundle-tmp-'));
    chmodSync(dataDir, 0o777);
    database = await createTestDatabase('stack_image');
    nats = await startTlsNats();
  });

  afterAll(async () => {
    if (stack && stack.child.exitCode === null) stack.child.kill('SIGKILL');
    await database?.drop();
    await nats?.stop();
    if (bundle) {
      makeWritable(bundle);
      rmSync(bundle, { recursive: true, force: true });
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('holds the production dependencies only, and dist/ with its @stack shims', () => {
    const lock = JSON.parse(readFileSync(join(repoRoot(), 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean }> };
    const devOnly = Object.entries(lock.packages).filter(([path, p]) => path.startsWith('node_modules/') && (p.dev === true || p.devOptional === true)).map(([path]) => path);
    expect(devOnly.length).toBeGreaterThan(0);
    const present = devOnly.filter((path) => existsSync(join(bundle, path)));
    expect(present).toEqual([]);
    for (const name of ['typescript', 'ts-node', 'jest', 'nx', '@swc/core', 'kubernetes-models']) expect(existsSync(join(bundle, 'node_modules', name))).toBe(false);
    const prod = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const name of Object.keys(prod.dependencies)) expect({ name, installed: existsSync(join(bundle, 'node_modules', name)) }).toEqual({ name, installed: true });
    expect(existsSync(join(bundle, 'dist/apps/stack/src/main.js'))).toBe(true);
    expect(existsSync(join(bundle, 'dist/node_modules/@stack/contracts'))).toBe(true);
    expect(existsSync(join(bundle, 'dist/.tsbuildinfo'))).toBe(false);
    // Test and benchmark code stays out: the CMD below runs without it.
    for (const path of ['dist/apps/e2e', 'dist/apps/bench', 'dist/node_modules/@stack/testing']) expect({ path, present: existsSync(join(bundle, path)) }).toEqual({ path, present: false });
    const size = spawnSync('du', ['-sk', join(bundle, 'node_modules'), join(bundle, 'dist')], { encoding: 'utf8' }).stdout.trim().split('\n').map((l) => Number(l.split('\t')[0]));
    process.stdout.write(`\nproduction bundle (the image's /app): node_modules ${(size[0] / 1024).toFixed(0)} MiB, dist ${(size[1] / 1024).toFixed(1)} MiB (reproduce: npx jest apps/e2e/src/k8s-image)\n`);
  });

  it('migrates with the Job command, serves with the CMD as a non-root user on a read-only /app over TLS to NATS, and exits 0 on SIGTERM', async () => {
    const cmd = execForm(runtime.instructions.find((i) => i.op === 'CMD')!.args)!;
    const port = await freePort();
    const secrets = generateStackSecrets();
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      ...imageEnv(),
      PORT: String(port),
      STACK_DATA_DIR: join(dataDir, 'stack'),
      STACK_PUBLIC_URL: `http://127.0.0.1:${port}`,
      DATABASE_URL: database.url,
      NATS_URL: nats.url,
      REDIS_URL: TEST_REDIS_URL,
      STACK_BUS_PREFIX: uniqueName('img'),
      STACK_MASTER_KEYS: secrets.masterKeys,
      STACK_INTERNAL_SECRET: secrets.internalSecret,
      STACK_MIGRATE_ON_START: 'false',
      STACK_SERVICES: 'all',
      STACK_INSTANCE_ID: 'image-test',
    };
    expect(env.HOST).toBe('0.0.0.0');
    expect(env.NODE_ENV).toBe('production');

    const [node, ...args] = cmd;
    const migrate = await runCommand(node === 'node' ? process.execPath : node, [...args, 'migrate'], { cwd: bundle, env, timeoutMs: 120_000, ...user });
    expect({ code: migrate.code, tail: migrate.code === 0 ? '' : migrate.output.slice(-3000) }).toEqual({ code: 0, tail: '' });

    // Without the platform CA the NATS certificate is refused, and the process stops.
    const untrusting = startBundle(bundle, cmd, env, user);
    let timer: NodeJS.Timeout | undefined;
    const refusedCode = await Promise.race([untrusting.exited, new Promise<'running'>((r) => (timer = setTimeout(() => r('running'), 60_000)))]);
    clearTimeout(timer);
    if (refusedCode === 'running') untrusting.child.kill('SIGKILL');
    expect(refusedCode).not.toBe('running');
    expect(refusedCode).not.toBe(0);
    expect(untrusting.output()).toMatch(/certificate/i);

    env.NODE_EXTRA_CA_CERTS = nats.caFile;
    stack = startBundle(bundle, cmd, env, user);
    const ready = await eventually(
      async () => {
        if (stack!.child.exitCode !== null) throw new Error(`exited with ${stack!.child.exitCode}:\n${stack!.output().slice(-3000)}`);
        const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return res?.status === 200 ? ((await res.json()) as unknown) : undefined;
      },
      90_000,
      'the bundle answering 200 on /readyz',
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${stack!.output().slice(-3000)}`);
    });
    expect(JSON.stringify(ready)).toContain('ok');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/v1/openapi.json`)).status).toBe(200);
    if (user) {
      const status = readFileSync(`/proc/${stack.child.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(user.uid));
    }

    stack.child.kill('SIGTERM');
    const code = await stack.exited;
    expect({ code, tail: code === 0 ? '' : stack.output().slice(-3000) }).toEqual({ code: 0, tail: '' });
    // Node itself got the signal and drained (no shell in between).
    expect(stack.output()).toContain('shutting down: no new requests');
    expect(stack.output()).toMatch(/"msg":"stopped"/);
  });
});
