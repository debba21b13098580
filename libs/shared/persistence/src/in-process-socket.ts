/**
 * A connection to the embedded Postgres from inside its own process, without the kernel: two
 * stream ends joined in memory, one handed to `pg` as its socket (the `stream` option), the other
 * accepted by the embedded server as if it had arrived over TCP. Everything above the socket —
 * the wire protocol, the server's scheduling, `pg`'s parser — is unchanged; what goes is a write
 * and a read system call per message on each side, the loopback's TCP processing and an epoll
 * wake-up, which on small statements cost as much as the statement.
 *
 * Bytes cross on the next tick (never inside the writer's own call, so neither side's handlers
 * run re-entrantly), in order. Ending one side ends the other's readable side; destroying one
 * destroys both, as a reset connection would.
 */
import { Duplex } from 'node:stream';

/** What the embedded server needs of a connection; a net.Socket and an in-process end both are. */
export interface ServerSideSocket extends Duplex {
  setNoDelay(noDelay?: boolean): this;
}

export class InProcessSocket extends Duplex implements ServerSideSocket {
  private peer: InProcessSocket | undefined;

  private constructor(private readonly onConnect?: (serverEnd: InProcessSocket) => void) {
    super({ allowHalfOpen: false, decodeStrings: true });
  }

  /**
   * The client end of a new connection, for `pg`: its `connect()` (pg calls it with the URL's
   * port and host, which are ignored) hands the server end to `accept` and then emits `connect`.
   */
  static client(accept: (serverEnd: InProcessSocket) => void): InProcessSocket {
    return new InProcessSocket(accept);
  }

  connect(): this {
    if (this.peer) throw new Error('InProcessSocket: already connected');
    const server = new InProcessSocket();
    server.peer = this;
    this.peer = server;
    process.nextTick(() => {
      if (this.destroyed) {
        server.destroy();
        return;
      }
      this.onConnect!(server);
      this.emit('connect');
    });
    return this;
  }

  override _read(): void {
    // Data is pushed by the peer's writes.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.deliver(chunk, done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    this.deliver(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), done);
  }

  private deliver(bytes: Buffer, done: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (!peer || peer.destroyed) {
      done(Object.assign(new Error('in-process connection closed'), { code: 'EPIPE' }));
      return;
    }
    process.nextTick(() => {
      if (!peer.destroyed) peer.push(bytes);
    });
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (peer) process.nextTick(() => peer.destroyed || peer.push(null));
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const peer = this.peer;
    if (peer && !peer.destroyed) process.nextTick(() => peer.destroy());
    done(err);
  }

  // What pg and the server call on a net.Socket; meaningless in memory.
  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}
