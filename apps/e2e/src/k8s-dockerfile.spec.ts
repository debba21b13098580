/**
 * deploy/Dockerfile read as a Docker engine would (none is installed here): stages, base
 * image, what each stage installs, the non-root user and the exec-form entry point. The
 * bundle it produces is built and started for real by k8s-image.e2e-spec.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { STACK_NODE_OPTIONS, repoRoot } from '@stack/testing';

import { execForm, parseDockerfile, type Stage } from './support/k8s-dockerfile';

const root = repoRoot();
const dockerfile = parseDockerfile(readFileSync(join(root, 'deploy/Dockerfile'), 'utf8'));
const stage = (name: string): Stage => {
  const s = dockerfile.stages.find((x) => x.name === name);
  if (!s) throw new Error(`no stage ${name} in deploy/Dockerfile`);
  return s;
};
const runs = (s: Stage): string[] => s.instructions.filter((i) => i.op === 'RUN').map((i) => i.args);
const runtime = dockerfile.stages[dockerfile.stages.length - 1];

describe('deploy/Dockerfile', () => {
  it('builds in stages from one Node LTS base: build (dev dependencies), deps (production only), runtime', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    const bases = new Set(dockerfile.stages.map((s) => s.from));
    expect(bases.size).toBe(1);
    const [base] = [...bases];
    // Even-numbered majors are the LTS lines; 26 has been Active LTS since 2026-10-28.
    const major = Number(/^node:(\d+)-[a-z]+-slim$/.exec(base)?.[1]);
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(26);
  });

  it('compiles with the dev dependencies in the build stage only', () => {
    const build = runs(stage('build'));
    expect(build.some((r) => /\bnpm ci\b/.test(r) && !r.includes('--omit=dev'))).toBe(true);
    expect(build.some((r) => r.includes('node tools/build.mjs'))).toBe(true);
    // What the build stage copies exists in the repository.
    for (const copy of stage('build').instructions.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
      const sources = copy.args.split(' ').slice(0, -1);
      for (const src of sources) expect({ src, exists: src.includes('*') || existsSync(join(root, src)) }).toEqual({ src, exists: true });
    }
  });

  it('installs production dependencies only, and the runtime stage gets node_modules and dist/ with no build tools or package manager', () => {
    expect(runs(stage('deps')).some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
    const copies = runtime.instructions.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies).toEqual(expect.arrayContaining([expect.stringMatching(/--from=deps .*\/app\/node_modules \.\/node_modules$/), expect.stringMatching(/--from=build .*\/src\/dist \.\/dist$/)]));
    for (const r of runs(runtime)) {
      expect(r).not.toMatch(/\b(apt-get|apk|npm (ci|install)|yarn|pnpm|gcc|g\+\+|make|python3?)\b/);
    }
    // npm itself is removed from the final image.
    expect(runs(runtime).some((r) => r.includes('rm -rf') && r.includes('/usr/local/lib/node_modules/npm') && r.includes('/usr/local/bin/npx'))).toBe(true);
  });

  it('runs as a numeric non-root user, with HOST=0.0.0.0, and starts Node directly (exec form) so SIGTERM reaches it', () => {
    const users = runtime.instructions.filter((i) => i.op === 'USER').map((i) => i.args);
    expect(users).toHaveLength(1);
    const [uid] = users[0].split(':');
    expect(Number(uid)).toBeGreaterThan(0);
    const env = runtime.instructions.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
    expect(env).toMatch(/\bHOST=0\.0\.0\.0\b/);
    expect(env).toMatch(/\bNODE_ENV=production\b/);
    expect(runtime.instructions.some((i) => i.op === 'ENTRYPOINT')).toBe(false);
    const cmds = runtime.instructions.filter((i) => i.op === 'CMD');
    expect(cmds).toHaveLength(1);
    // With the Node options of every STACK server (as under `npm start` and in the test harness).
    expect(execForm(cmds[0].args)).toEqual(['node', ...STACK_NODE_OPTIONS, 'dist/apps/stack/src/main.js']);
    // The user comes after every file is in place, and nothing the process runs as owns them.
    const userAt = runtime.instructions.findIndex((i) => i.op === 'USER');
    expect(runtime.instructions.slice(userAt).some((i) => i.op === 'COPY' || i.op === 'RUN')).toBe(false);
  });

  it('carries the OCI labels', () => {
    const labels = runtime.instructions.filter((i) => i.op === 'LABEL').map((i) => i.args).join(' ');
    for (const key of ['title', 'description', 'source', 'licenses', 'version', 'revision']) expect(labels).toContain(`org.opencontainers.image.${key}=`);
  });

  it('keeps local state, secrets and build output out of the build context (.dockerignore)', () => {
    const ignored = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(['**/node_modules', 'dist', '.git', '.stack', 'test-artifacts', '.env', '.env.*']));
  });
});

describe('the Dockerfile reader', () => {
  it('joins continued lines and tells exec form from shell form', () => {
    const d = parseDockerfile('ARG B=node:1\nFROM ${B} AS a\nRUN one \\\n  # note\n  two\nCMD node x.js\nFROM a\nCMD ["node", "x.js"]\n');
    expect(d.stages.map((s) => s.from)).toEqual(['node:1', 'a']);
    expect(d.stages[0].instructions[0]).toEqual({ op: 'RUN', args: 'one two' });
    expect(execForm(d.stages[0].instructions[1].args)).toBeUndefined();
    expect(execForm(d.stages[1].instructions[0].args)).toEqual(['node', 'x.js']);
  });
});
