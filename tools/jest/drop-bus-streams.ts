// Integration and end-to-end test files name their bus prefixes with uniqueName. Once a file has
// finished (tools/jest/stack-environment.js), the JetStream streams made under those names on the
// shared NATS are deleted, so test runs leave no streams behind; each run's names are its own, so
// no other run's streams are touched. Best effort: a file that never reached NATS, or a NATS that
// is gone, is no failure of the file.
import { dropBusStreams, takeUniqueNames } from '@stack/testing';

const g = globalThis as { __stackAfterFile?: Array<() => Promise<void>> };
(g.__stackAfterFile ??= []).push(async () => {
  const names = takeUniqueNames();
  if (names.length > 0) await dropBusStreams(names).catch(() => undefined);
});
