/**
 * A TCP proxy that a partition test puts between a service and one of its servers (NATS,
 * Postgres, Redis) to break the link on purpose: `cut()` resets every connection and refuses new
 * ones until `restore()`; `pause()` holds bytes in both directions (a link that hangs rather than
 * fails) until `resume()`. Only its own connections are touched, never the server itself.
 */
import { createServer, connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export interface TcpFaultProxyOptions {
  target: { host: string; port: number };
  /** Port to listen on (loopback); default a free one. */
  port?: number;
}

export interface TcpFaultProxy {
  host: string;
  port: number;
  /** `host:port`, to build a URL with the scheme of the proxied protocol. */
  address: string;
  /** Resets every open connection and refuses new ones until restore(). */
  cut(): void;
  restore(): void;
  /** Holds bytes in both directions (connections stay open, nothing flows) until resume(). */
  pause(): void;
  resume(): void;
  /** Connections currently open through the proxy. */
  connections(): number;
  stop(): Promise<void>;
}

type Direction = {
  from: Socket;
  to: Socket;
  held: Buffer[];
  ended: boolean;
  endSent: boolean;
  waitingForDrain: boolean;
};

export async function startTcpFaultProxy(options: TcpFaultProxyOptions): Promise<TcpFaultProxy> {
  const host = '127.0.0.1';
  const pairs = new Set<{ client: Socket; upstream: Socket; directions: Direction[] }>();
  let isCut = false;
  let isPaused = false;

  const flush = (d: Direction): void => {
    if (isPaused || d.to.destroyed) return;
    while (d.held.length > 0 && !d.waitingForDrain) {
      const chunk = d.held.shift() as Buffer;
      if (!d.to.write(chunk)) d.waitingForDrain = true;
    }
    if (d.held.length === 0 && d.ended && !d.endSent) {
      d.endSent = true;
      d.to.end();
    }
    if (d.held.length === 0 && !d.waitingForDrain) d.from.resume();
  };

  // A hand-written pump rather than pipe(): pipe would resume a paused source on 'drain'.
  const pump = (from: Socket, to: Socket): Direction => {
    const d: Direction = { from, to, held: [], ended: false, endSent: false, waitingForDrain: false };
    from.on('data', (chunk: Buffer) => {
      d.held.push(chunk);
      if (isPaused || d.waitingForDrain) {
        from.pause();
        return;
      }
      flush(d);
    });
    from.on('end', () => {
      d.ended = true;
      flush(d);
    });
    to.on('drain', () => {
      d.waitingForDrain = false;
      flush(d);
    });
    return d;
  };

  // allowHalfOpen on both legs: one side's FIN is passed on, not turned into a close of both.
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    if (isCut) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: options.target.host, port: options.target.port, allowHalfOpen: true });
    upstream.pause();
    const pair = { client, upstream, directions: [pump(client, upstream), pump(upstream, client)] };
    pairs.add(pair);
    const teardown = (): void => {
      pairs.delete(pair);
      if (!client.destroyed) client.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', teardown);
    upstream.on('close', teardown);
    upstream.on('connect', () => {
      if (!isPaused) {
        client.resume();
        upstream.resume();
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: options.port ?? 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const resetAll = (): void => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      // A reset, not a polite close: the way a dropped link looks to both ends.
      if (!pair.client.destroyed) pair.client.resetAndDestroy();
      if (!pair.upstream.destroyed) pair.upstream.resetAndDestroy();
    }
  };

  let stopped: Promise<void> | undefined;
  return {
    host,
    port,
    address: `${host}:${port}`,
    cut() {
      isCut = true;
      resetAll();
    },
    restore() {
      isCut = false;
    },
    pause() {
      isPaused = true;
      for (const pair of pairs) {
        pair.client.pause();
        pair.upstream.pause();
      }
    },
    resume() {
      isPaused = false;
      // flush() resumes each source once what it held has been written.
      for (const pair of pairs) for (const d of pair.directions) flush(d);
    },
    connections: () => pairs.size,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        resetAll();
      });
      return stopped;
    },
  };
}
