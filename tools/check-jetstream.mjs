#!/usr/bin/env node
// Checks that a NATS server answers and has JetStream enabled (used by .ci/run after `npm ci`).
//   node tools/check-jetstream.mjs [nats://127.0.0.1:4222]
// Exits 0 when JetStream answers, 1 otherwise, with one line saying why.
import { connect } from 'nats';

const url = process.argv[2] ?? process.env.STACK_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
let nc;
try {
  nc = await connect({ servers: url, timeout: 3000, reconnect: false });
  const jsm = await nc.jetstreamManager({ timeout: 3000 });
  const info = await jsm.getAccountInfo();
  process.stdout.write(`NATS ${url}: JetStream enabled (${info.streams} streams)\n`);
  await nc.close();
  process.exit(0);
} catch (e) {
  const message = e instanceof Error ? e.message : String(e);
  // The server answers JetStream API requests with "no responders" (503) when started without -js.
  const why = message === '503' ? 'reachable, but JetStream is not enabled (start nats-server with -js)' : message;
  process.stderr.write(`NATS ${url}: ${why}\n`);
  await nc?.close().catch(() => undefined);
  process.exit(1);
}
