// Integration and end-to-end test files name their bus and key prefixes with uniqueName. Once a
// file has finished (tools/jest/stack-environment.js), the JetStream streams and Redis keys made
// under those names on the shared servers are deleted, so test runs leave nothing behind; each
// run's names are its own, so no other run's are touched. Best effort: a file that never reached
// the servers, or a server that is gone, is no failure of the file.
import { dropBusStreams, dropCacheKeys, takeUniqueNames } from '@stack/testing';

const g = globalThis as { __stackAfterFile?: Array<() => Promise<void>> };
(g.__stackAfterFile ??= []).push(async () => {
  const names = takeUniqueNames();
  if (names.length === 0) return;
  await Promise.all([dropBusStreams(names).catch(() => undefined), dropCacheKeys(names).catch(() => undefined)]);
});
