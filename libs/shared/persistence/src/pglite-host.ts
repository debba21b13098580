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
import { Worker } from 'node:worker_threads';

export interface ExecResult {
  /** Every backend message the input produced, in order. */
  output: Buffer;
  /** PGlite's own view after the input: inside a transaction block or not. */
  inTransaction: boolean;
}

export interface PgliteHost {
  exec(input: Buffer): Promise<ExecResult>;
  close(): Promise<void>;
}

type WorkerReply =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; output: Uint8Array; inTransaction: boolean }
  | { type: 'error'; id: number; message: string }
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
parentPort.on('message', async (msg) => {
  if (msg.type === 'exec') {
    try {
      const chunks = [];
      // PGlite reuses its output buffer after the callback returns, hence the copy.
      await db.runExclusive(() => db.execProtocolRawStream(msg.input, { onRawData: (d) => chunks.push(d.slice()) }));
      const output = own(chunks);
      parentPort.postMessage({ type: 'result', id: msg.id, output, inTransaction: db.isInTransaction() }, [output.buffer]);
    } catch (err) {
      parentPort.postMessage({ type: 'error', id: msg.id, message: String((err && err.message) || err) });
    }
  } else if (msg.type === 'close') {
    try { if (db) await db.close(); } finally { parentPort.postMessage({ type: 'closed' }); }
  }
});
`;

/** Starts PGlite on a worker thread with its data in `dataDir`; resolves once the database is open. */
export async function startPgliteHost(dataDir: string): Promise<PgliteHost> {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { base: __filename, dataDir } });
  const pending = new Map<number, { resolve(r: ExecResult): void; reject(e: Error): void }>();
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
        case 'result': {
          const p = pending.get(msg.id);
          pending.delete(msg.id);
          p?.resolve({ output: Buffer.from(msg.output.buffer, msg.output.byteOffset, msg.output.byteLength), inTransaction: msg.inTransaction });
          break;
        }
        case 'error': {
          const p = pending.get(msg.id);
          pending.delete(msg.id);
          p?.reject(new Error(`PGlite: ${msg.message}`));
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

  return {
    exec(input) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      // Copy into a fresh ArrayBuffer that can be transferred: `input` may be a view on a pooled one.
      const bytes = new Uint8Array(input.length);
      bytes.set(input);
      return new Promise<ExecResult>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ type: 'exec', id, input: bytes }, [bytes.buffer]);
      });
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
