/**
 * For this library's tests: an embedded Postgres on a throw-away data dir. A fresh PGlite
 * spends ~5 s in initdb, so the first call initialises a template data dir once per machine
 * (per PGlite version) and every later one copies it.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { startEmbeddedPostgres, type EmbeddedPostgres, type EmbeddedPostgresOptions } from '../embedded-postgres';

export interface TestEmbeddedPostgres extends EmbeddedPostgres {
  dataDir: string;
  /** Closes the server and deletes its data dir. */
  dispose(): Promise<void>;
}

function pgliteVersion(): string {
  const main = require.resolve('@electric-sql/pglite');
  const pkg = JSON.parse(readFileSync(join(dirname(main), '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

async function templateDir(): Promise<string> {
  const template = join(tmpdir(), `stack-pglite-template-${pgliteVersion()}`);
  if (existsSync(join(template, 'pgdata', 'PG_VERSION'))) return template;
  const building = mkdtempSync(join(tmpdir(), 'stack-pglite-building-'));
  const pg = await startEmbeddedPostgres({ dataDir: building });
  await pg.close();
  try {
    // Atomic: a parallel test worker either sees no template or a complete one.
    renameSync(building, template);
  } catch {
    rmSync(building, { recursive: true, force: true });
  }
  return template;
}

export async function startTestEmbeddedPostgres(options: Omit<EmbeddedPostgresOptions, 'dataDir'> = {}): Promise<TestEmbeddedPostgres> {
  const template = await templateDir();
  const dataDir = mkdtempSync(join(tmpdir(), 'stack-pglite-test-'));
  cpSync(join(template, 'pgdata'), join(dataDir, 'pgdata'), { recursive: true });
  const pg = await startEmbeddedPostgres({ ...options, dataDir });
  return {
    ...pg,
    dataDir,
    async dispose() {
      try {
        await pg.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
