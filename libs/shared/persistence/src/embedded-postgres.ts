/**
 * The embedded Postgres of the one-process mode: PGlite (Postgres compiled to WebAssembly,
 * one backend, data on disk under `${dataDir}/pgdata`) behind a TCP socket on 127.0.0.1, so
 * TypeORM and `pg` reach it with an ordinary postgres:// URL and the same migrations run here
 * as on a real server.
 *
 * PGlite has exactly one backend, so every connection shares one session. This server lets
 * many clients connect and hands the backend to one connection at a time, from its first
 * message until the backend says ReadyForQuery with status idle: whole transactions, and
 * whole extended-protocol exchanges (Parse … Sync), are serialised across connections. The
 * multiplexer in @electric-sql/pglite-socket switches connections at single messages outside
 * explicit transactions; the backend has one unnamed prepared statement, so a Bind of one
 * client landing after another client's Parse would run the wrong statement (reproduced
 * against PGlite directly). Hence this server, which uses only PGlite's
 * `execProtocolRawStream`, on a worker thread (see pglite-host.ts).
 *
 * The price of one backend: a connection that holds a transaction open while it awaits work
 * on another connection waits forever. Code must never hold one transaction while waiting on
 * another (DESIGN.md §9); a watchdog logs a warning when the backend is held that long.
 */
import { mkdirSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';

import { InProcessSocket, type ServerSideSocket } from './in-process-socket';
import { BackendStatusTracker, ClientFrameSplitter, errorResponse, queryMessage, syncMessage } from './pg-wire';
import { SILENT_LOGGER, errorMessage, type PersistenceLogger } from './persistence-logger';
import { SharedStatements, StatementRewriter } from './statement-cache';
import { startEmbeddedVacuum, type MaintenanceRound } from './embedded-vacuum';
import { startPgliteHost, type PgliteHost } from './pglite-host';

/** Connections' exchanges run in one trip to the worker at most. */
const MAX_BATCH = 32;

export interface EmbeddedPostgresOptions {
  /** STACK_DATA_DIR; the database lives in `${dataDir}/pgdata`. */
  dataDir: string;
  /** Clients connected at once (the pools of every data source in the process together). Default 100. */
  maxConnections?: number;
  /** Port on 127.0.0.1; default 0 (a free one). */
  port?: number;
  /** A connection holding the backend this long while others wait is logged as a likely deadlock. Default 10 s. */
  stallWarningMs?: number;
  /** How often tables with many dead rows are vacuumed and tables with many changed rows analysed (PGlite has no autovacuum; embedded-vacuum.ts). Default 2 s; 0: never. */
  vacuumIntervalMs?: number;
  logger?: PersistenceLogger;
}

export interface EmbeddedPostgres {
  /**
   * postgres://postgres@127.0.0.1:<port>/postgres — over TCP for any client; a data source of
   * this process given this URL connects in memory instead (`inProcessStream`).
   */
  url: string;
  /** Vacuums the tables with many dead rows and analyses those with many changed rows now (what the interval does). */
  vacuumNow(): Promise<MaintenanceRound>;
  /** Stops accepting, rolls back what open connections left, and closes PGlite so its files are consistent. */
  close(): Promise<void>;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const maxConnections = options.maxConnections ?? 100;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new Error(`startEmbeddedPostgres: maxConnections must be a positive integer, got ${String(options.maxConnections)}`);
  }
  // PGlite creates pgdata itself but not its parents.
  mkdirSync(options.dataDir, { recursive: true });
  const db = await startPgliteHost(join(options.dataDir, 'pgdata'));
  const logger = options.logger ?? SILENT_LOGGER;
  const server = new EmbeddedServer(db, maxConnections, options.stallWarningMs ?? 10_000, logger);
  try {
    const port = await server.listen(options.port ?? 0);
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const accept = (end: InProcessSocket) => server.accept(end);
    inProcessServers.set(url, accept);
    const vacuum = startEmbeddedVacuum(url, () => InProcessSocket.client((end) => server.accept(end, { internal: true })), options.vacuumIntervalMs ?? 2000, logger);
    return {
      url,
      vacuumNow: () => vacuum.runOnce(),
      close: async () => {
        await vacuum.stop();
        if (inProcessServers.get(url) === accept) inProcessServers.delete(url);
        return server.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/** The embedded servers running in this process, by URL. */
const inProcessServers = new Map<string, (end: InProcessSocket) => void>();

/**
 * For `pg`'s `stream` option: when `url` is an embedded server of this very process, a factory of
 * in-memory connections to it (same protocol and scheduling as over TCP, no system calls);
 * otherwise undefined, and the client uses TCP.
 */
export function inProcessStream(url: string): (() => InProcessSocket) | undefined {
  const accept = inProcessServers.get(url);
  return accept ? () => InProcessSocket.client(accept) : undefined;
}

/** One client connection. */
class Session {
  readonly splitter = new ClientFrameSplitter();
  /** Complete messages waiting for the backend. */
  pending: Buffer[] = [];
  /** True while this session owns the backend between messages (inside a transaction or an unfinished exchange). */
  holding = false;
  closed = false;

  readonly statements: StatementRewriter;

  constructor(
    readonly id: number,
    readonly socket: ServerSideSocket,
    shared: SharedStatements,
    readonly internal: boolean,
  ) {
    this.statements = new StatementRewriter(shared);
  }
}

class EmbeddedServer {
  private readonly sessions = new Set<Session>();
  /** Every open socket, refused ones included, so close() never waits on a client. */
  private readonly sockets = new Set<ServerSideSocket>();
  private readonly waiting: Session[] = [];
  /** Statements prepared once in the one backend for every connection (statement-cache.ts). */
  private readonly statements = new SharedStatements();

  /** Sessions that count against maxConnections (the server's own do not). */
  private get clients(): number {
    let n = 0;
    for (const s of this.sessions) if (!s.internal) n++;
    return n;
  }
  private owner: Session | undefined;
  private ownerSince = 0;
  private stallWarned = false;
  private running: Promise<void> | undefined;
  private nextId = 1;
  private tcp: Server | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly db: PgliteHost,
    private readonly maxConnections: number,
    private readonly stallWarningMs: number,
    private readonly logger: PersistenceLogger,
  ) {}

  listen(port: number): Promise<number> {
    const tcp = createServer((socket) => this.accept(socket));
    this.tcp = tcp;
    this.watchdog = setInterval(() => this.checkStall(), Math.min(1000, this.stallWarningMs));
    this.watchdog.unref();
    return new Promise((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, '127.0.0.1', () => {
        tcp.off('error', reject);
        resolve((tcp.address() as AddressInfo).port);
      });
    });
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    const tcp = this.tcp;
    const stopped = new Promise<void>((resolve) => (tcp ? tcp.close(() => resolve()) : resolve()));
    for (const session of this.sessions) this.drop(session);
    for (const socket of this.sockets) socket.destroy();
    // Wait for the message in flight and for the rollback of whatever the owner left open.
    while (this.running) await this.running;
    await stopped;
    await this.db.close();
  }

  /** A new connection: a TCP socket, or the server end of an in-process one (`internal`: the server's own, outside maxConnections). */
  accept(socket: ServerSideSocket, options: { internal?: boolean } = {}): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    if (this.closing || (!options.internal && this.clients >= this.maxConnections)) {
      socket.on('error', () => undefined);
      // Destroyed once written: a client need not close its side, and the server must not wait for it.
      socket.end(errorResponse('FATAL', '53300', `embedded Postgres: too many connections (max ${this.maxConnections})`), () => socket.destroy());
      return;
    }
    const session = new Session(this.nextId++, socket, this.statements, options.internal === true);
    this.sessions.add(session);
    socket.on('data', (chunk: Buffer) => this.receive(session, chunk));
    socket.on('error', () => this.drop(session));
    socket.on('close', () => this.drop(session));
  }

  private receive(session: Session, chunk: Buffer): void {
    if (session.closed) return;
    for (const frame of session.splitter.push(chunk)) {
      switch (frame.kind) {
        case 'ssl-request':
          // No TLS on a loopback socket: 'N' tells the client to go on in plain text.
          session.socket.write('N');
          break;
        case 'startup':
          session.statements.startup();
          session.pending.push(frame.bytes);
          break;
        case 'message': {
          const bytes = session.statements.input(frame.type, frame.bytes);
          if (bytes) session.pending.push(bytes);
          break;
        }
        case 'cancel':
          // PGlite has no second backend to signal; the protocol expects no answer.
          session.socket.end();
          return;
        case 'terminate':
          // Never forwarded: PGlite would not end the shared session, and what this client
          // left open is rolled back when its socket closes.
          session.socket.end();
          this.drop(session);
          return;
        case 'invalid':
          this.logger.warn({ session: session.id, reason: frame.reason }, 'embedded Postgres: closing a connection that does not speak protocol 3');
          session.socket.destroy();
          this.drop(session);
          return;
      }
    }
    if (session.pending.length === 0) return;
    if (session !== this.owner && !this.waiting.includes(session)) this.waiting.push(session);
    this.kick();
  }

  private drop(session: Session): void {
    if (session.closed) return;
    session.closed = true;
    session.pending = [];
    session.statements.abandon();
    this.sessions.delete(session);
    const i = this.waiting.indexOf(session);
    if (i >= 0) this.waiting.splice(i, 1);
    if (!session.socket.destroyed) session.socket.destroy();
    if (session === this.owner) this.kick();
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.run()
      .catch((err: unknown) => this.logger.error({ err: errorMessage(err) }, 'embedded Postgres: scheduler failed'))
      .finally(() => {
        this.running = undefined;
        if (this.hasWork()) this.kick();
      });
  }

  private hasWork(): boolean {
    if (this.owner) return this.owner.closed || this.owner.pending.length > 0;
    return this.waiting.length > 0;
  }

  private async run(): Promise<void> {
    for (;;) {
      if (!this.owner) {
        const batch = this.takeWaiting();
        if (batch.length === 0) return;
        if (batch.length > 1) {
          await this.runBatch(batch);
          continue;
        }
        this.own(batch[0]!);
      }
      const session = this.owner!;
      if (session.closed) {
        if (session.holding) await this.abandon(session);
        this.release();
        continue;
      }
      if (session.pending.length === 0) {
        if (session.holding) return; // its next message wakes us up
        this.release();
        continue;
      }
      const input = session.pending.length === 1 ? session.pending[0]! : Buffer.concat(session.pending);
      session.pending = [];
      try {
        session.holding = !(await this.execute(input, (bytes) => {
          if (!session.closed) session.socket.write(session.statements.output(bytes));
        }));
      } catch (err) {
        this.logger.error({ session: session.id, err: errorMessage(err) }, 'embedded Postgres: PGlite failed on a message; closing that connection');
        session.holding = true;
        this.drop(session);
        continue;
      }
      if (!session.holding) {
        this.release();
        // Others may be waiting: the session queues again behind them with what it sent meanwhile.
        if (session.pending.length > 0 && !session.closed) this.waiting.push(session);
      }
    }
  }

  /** The waiting sessions that have something to run, oldest first, up to a batch. */
  private takeWaiting(): Session[] {
    const batch: Session[] = [];
    while (this.waiting.length > 0 && batch.length < MAX_BATCH) {
      const s = this.waiting.shift()!;
      if (s.closed || s.pending.length === 0) continue; // receive() never queues a session twice
      batch.push(s);
    }
    return batch;
  }

  private own(session: Session): void {
    this.owner = session;
    this.ownerSince = Date.now();
    this.stallWarned = false;
    const i = this.waiting.indexOf(session);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  /**
   * Several connections' next exchanges in one trip to the worker (PgliteHost.execMany): it runs
   * them in order while each leaves the backend idle. The one that leaves it busy (a transaction,
   * an unfinished exchange) becomes the owner, exactly as if it had run alone; those after it, not
   * run, go back to the head of the queue with their input.
   */
  private async runBatch(batch: Session[]): Promise<void> {
    const inputs = batch.map((s) => {
      const input = s.pending.length === 1 ? s.pending[0]! : Buffer.concat(s.pending);
      s.pending = [];
      return input;
    });
    let outcome: Awaited<ReturnType<PgliteHost['execMany']>>;
    try {
      outcome = await this.db.execMany(inputs);
    } catch (err) {
      this.logger.error({ sessions: batch.map((s) => s.id), err: errorMessage(err) }, 'embedded Postgres: PGlite failed on a batch; closing those connections');
      for (const s of batch) this.drop(s);
      return;
    }
    const { results, error } = outcome;
    let owner: Session | undefined;
    results.forEach((r, i) => {
      const s = batch[i]!;
      if (r.output.length > 0 && !s.closed) s.socket.write(s.statements.output(r.output));
      if (i === results.length - 1 && !error) {
        const tracker = new BackendStatusTracker();
        tracker.feed(r.output);
        if (r.output.length === 0 || !tracker.idle || r.inTransaction) owner = s;
      }
    });
    let ran = results.length;
    if (error) {
      const failed = batch[error.index]!;
      this.logger.error({ session: failed.id, err: error.message }, 'embedded Postgres: PGlite failed on a message; closing that connection');
      owner = failed;
      ran = error.index + 1;
    }
    // Not run: back to the head of the queue, their input first.
    const notRun = batch.slice(ran);
    notRun.forEach((s, i) => {
      s.pending.unshift(inputs[ran + i]!);
      const at = this.waiting.indexOf(s);
      if (at >= 0) this.waiting.splice(at, 1);
    });
    this.waiting.unshift(...notRun.filter((s) => !s.closed));
    if (owner) {
      this.own(owner);
      owner.holding = true;
      if (error) this.drop(owner);
    }
  }

  private release(): void {
    this.owner = undefined;
  }

  /** Runs client messages on the backend; true when it ended idle (ReadyForQuery, no transaction). */
  private async execute(input: Buffer, onData: (bytes: Buffer) => void): Promise<boolean> {
    const { output, inTransaction } = await this.db.exec(input);
    if (output.length === 0) return false; // an unfinished exchange (no Sync yet): keep the backend
    const tracker = new BackendStatusTracker();
    tracker.feed(output);
    onData(output);
    return tracker.idle && !inTransaction;
  }

  /** A client vanished while it owned the backend: end its exchange and roll back its transaction. */
  private async abandon(session: Session): Promise<void> {
    try {
      await this.db.exec(syncMessage());
      const { inTransaction } = await this.db.exec(queryMessage('ROLLBACK'));
      if (inTransaction) throw new Error('still inside a transaction after ROLLBACK');
      this.logger.debug({ session: session.id }, 'embedded Postgres: rolled back what a closed connection left open');
    } catch (err) {
      this.logger.error({ session: session.id, err: errorMessage(err) }, 'embedded Postgres: could not roll back after a closed connection');
    }
    session.holding = false;
  }

  private checkStall(): void {
    const owner = this.owner;
    if (!owner || !owner.holding || this.stallWarned || this.waiting.length === 0) return;
    const heldMs = Date.now() - this.ownerSince;
    if (heldMs < this.stallWarningMs) return;
    this.stallWarned = true;
    this.logger.warn(
      { session: owner.id, heldMs, waiting: this.waiting.length },
      'embedded Postgres: one connection has held the only backend this long while others wait; a transaction that awaits work on another connection deadlocks the one-process mode',
    );
  }
}
