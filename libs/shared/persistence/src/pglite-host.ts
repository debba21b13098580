/**
 * Runs PGlite on a worker thread and lets the embedded server hand it raw protocol messages.
 *
 * Why a thread: PGlite executes each message synchronously in WebAssembly, so on the main
 * thread every SQL statement would stall the whole one-process application (HTTP, bus,
 * timers) for its duration; on a worker the two cores share the load. It also keeps PGlite's
 * dynamic `import()` calls out of module sandboxes such as Jest's, which cannot run them.
 *
 * The worker's code is inline (plain JavaScript, no build step, no file to ship beside a
 * bundle) and loads PGlite by Node's own resolution from this module's location.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

export interface ExecResult {
  /** Every backend message the input produced, in order. */
  output: Buffer;
  /** PGlite's own view after the input: inside a transaction block or not. */
  inTransaction: boolean;
}

/** What a run of several connections' inputs did: the results of those executed, in order, and the error that stopped it, if any. */
export interface ExecManyResult {
  results: ExecResult[];
  /** The input at `index` failed (nothing after it ran). */
  error?: { index: number; message: string };
}

export interface PgliteHost {
  exec(input: Buffer): Promise<ExecResult>;
  /**
   * Runs the inputs one after another in one trip to the worker, as long as each leaves the
   * backend idle (ReadyForQuery 'I', no transaction block): the first that leaves it busy — a
   * transaction, an unfinished exchange — is the last run, and so is one that fails. Several
   * connections' autocommit statements thus run back to back, without the backend waiting on
   * the main thread between them.
   */
  execMany(inputs: readonly Buffer[]): Promise<ExecManyResult>;
  close(): Promise<void>;
}

type WorkerReply =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'results'; id: number; results: { output: Uint8Array; inTransaction: boolean }[]; error?: { index: number; message: string } }
  | { type: 'closed' };

const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createRequire } = require('node:module');
const { PGlite } = createRequire(workerData.base)('@electric-sql/pglite');
let db;
function own(chunks) {
  // A fresh ArrayBuffer, so it can be transferred without copying (Buffer.concat may use a shared pool).
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}
PGlite.create({ dataDir: workerData.dataDir }).then(
  (created) => { db = created; parentPort.postMessage({ type: 'ready' }); },
  (err) => parentPort.postMessage({ type: 'failed', message: String((err && err.stack) || err) }),
);
// True when a complete run of backend messages ends with ReadyForQuery 'I' (idle, no transaction block).
function endsIdle(out) {
  let i = 0, lastType = 0, lastStatus = 0;
  while (i + 5 <= out.length) {
    const type = out[i];
    const len = ((out[i + 1] << 24) | (out[i + 2] << 16) | (out[i + 3] << 8) | out[i + 4]) >>> 0;
    if (type === 0x5a && i + 5 < out.length) lastStatus = out[i + 5];
    lastType = type;
    i += 1 + len;
  }
  return i === out.length && lastType === 0x5a && lastStatus === 0x49;
}
parentPort.on('message', async (msg) => {
  if (msg.type === 'exec') {
    const results = [];
    const transfer = [];
    let error;
    for (let k = 0; k < msg.inputs.length; k++) {
      try {
        const chunks = [];
        // PGlite reuses its output buffer after the callback returns, hence the copy.
        await db.runExclusive(() => db.execProtocolRawStream(msg.inputs[k], { onRawData: (d) => chunks.push(d.slice()) }));
        const output = own(chunks);
        const inTransaction = db.isInTransaction();
        results.push({ output, inTransaction });
        transfer.push(output.buffer);
        if (inTransaction || !endsIdle(output)) break;
      } catch (err) {
        error = { index: k, message: String((err && err.message) || err) };
        break;
      }
    }
    parentPort.postMessage({ type: 'results', id: msg.id, results, error }, transfer);
  } else if (msg.type === 'close') {
    try { if (db) await db.close(); } finally { parentPort.postMessage({ type: 'closed' }); }
  }
});
`;

/**
 * Starts PGlite on a worker thread with its data in `dataDir`; resolves once the database is open.
 * A new cluster is created by a worker of its own that then exits: PGlite runs initdb in a
 * WebAssembly instance of its own and never gives that memory back, about 470 MiB a process would
 * otherwise carry until it restarts.
 */
export async function startPgliteHost(dataDir: string): Promise<PgliteHost> {
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await (await openPgliteWorker(dataDir)).close();
  return openPgliteWorker(dataDir);
}

async function openPgliteWorker(dataDir: string): Promise<PgliteHost> {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { base: __filename, dataDir } });
  const pending = new Map<number, { resolve(r: ExecManyResult): void; reject(e: Error): void }>();
  let nextId = 1;
  let dead: Error | undefined;
  let onClosed: (() => void) | undefined;

  const fail = (err: Error): void => {
    dead ??= err;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };

  const ready = new Promise<void>((resolve, reject) => {
    worker.on('message', (msg: WorkerReply) => {
      switch (msg.type) {
        case 'ready':
          resolve();
          break;
        case 'failed':
          reject(new Error(`embedded Postgres: PGlite did not open ${dataDir}: ${msg.message}`));
          break;
        case 'results': {
          const p = pending.get(msg.id);
          pending.delete(msg.id);
          p?.resolve({
            results: msg.results.map((r) => ({ output: Buffer.from(r.output.buffer, r.output.byteOffset, r.output.byteLength), inTransaction: r.inTransaction })),
            ...(msg.error ? { error: msg.error } : {}),
          });
          break;
        }
        case 'closed':
          onClosed?.();
          break;
      }
    });
    worker.on('error', (err) => {
      fail(err);
      reject(err);
    });
    worker.on('exit', (code) => {
      fail(new Error(`embedded Postgres: the PGlite worker exited (code ${code})`));
      reject(dead!);
      onClosed?.();
    });
  });

  try {
    await ready;
  } catch (err) {
    await worker.terminate();
    throw err;
  }

  const execMany = (inputs: readonly Buffer[]): Promise<ExecManyResult> => {
    if (dead) return Promise.reject(dead);
    const id = nextId++;
    // Copies into fresh ArrayBuffers that can be transferred: an input may be a view on a pooled one.
    const copies = inputs.map((input) => {
      const bytes = new Uint8Array(input.length);
      bytes.set(input);
      return bytes;
    });
    return new Promise<ExecManyResult>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ type: 'exec', id, inputs: copies }, copies.map((c) => c.buffer));
    });
  };

  return {
    execMany,
    async exec(input) {
      const { results, error } = await execMany([input]);
      if (error) throw new Error(`PGlite: ${error.message}`);
      return results[0]!;
    },
    async close() {
      if (!dead) {
        const closed = new Promise<void>((resolve) => (onClosed = resolve));
        worker.postMessage({ type: 'close' });
        await closed;
      }
      await worker.terminate();
    },
  };
}
