#!/usr/bin/env node
// Runs STACK the way Kubernetes does, on this machine: six processes (one per service) on the
// real PostgreSQL, NATS and Redis (the same loopback servers the tests use), behind a reverse
// proxy with the Ingress's routes. A fresh database and bus prefix each time; Ctrl-C stops
// everything and drops the database.
//
//   npm run distributed                    one replica of each service
//   npm run distributed -- mcp-gateway=2   more replicas of some
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { startDistributedStack } = require(join(root, 'dist/node_modules/@stack/testing'));

const replicas = {};
for (const arg of process.argv.slice(2)) {
  const [service, n] = arg.split('=');
  if (!service || !/^\d+$/.test(n ?? '')) {
    process.stderr.write(`usage: npm run distributed -- [service=replicas …]   (got ${JSON.stringify(arg)})\n`);
    process.exit(2);
  }
  replicas[service] = Number(n);
}

const stack = await startDistributedStack({ replicas });
process.stdout.write(`\nSTACK (distributed) is running behind ${stack.publicUrl}\n`);
for (const p of stack.processes) process.stdout.write(`  ${p.service.padEnd(17)} #${p.replica}  ${p.url}  (pid ${p.process.pid})\n`);
process.stdout.write(`  database ${stack.database.name}, bus prefix ${stack.busPrefix}\n  logs: test-artifacts/logs/\n  Ctrl-C stops it.\n`);
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await stack.stop();
    process.exit(0);
  });
}
