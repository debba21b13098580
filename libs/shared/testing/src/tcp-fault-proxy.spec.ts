import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

import { freePort } from './free-port';
import { startTcpFaultProxy } from './tcp-fault-proxy';
import type { TcpFaultProxy } from './tcp-fault-proxy';

/** A client that collects what it receives and remembers how its connection ended. */
interface Client {
  socket: Socket;
  received(): string;
  ended: Promise<'closed' | 'error'>;
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

function client(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    const listeners = new Set<() => void>();
    socket.on('data', (d: Buffer) => {
      data += d.toString();
      for (const l of listeners) l();
    });
    const ended = new Promise<'closed' | 'error'>((res) => {
      let sawError = false;
      socket.on('error', () => {
        sawError = true;
      });
      socket.on('close', () => res(sawError ? 'error' : 'closed'));
    });
    socket.once('connect', () =>
      resolve({
        socket,
        received: () => data,
        ended,
        waitFor: (text, timeoutMs = 2000) =>
          new Promise<void>((res, rej) => {
            if (data.includes(text)) return res();
            const timer = setTimeout(() => rej(new Error(`did not receive ${text}; got ${JSON.stringify(data)}`)), timeoutMs);
            const check = (): void => {
              if (data.includes(text)) {
                clearTimeout(timer);
                listeners.delete(check);
                res();
              }
            };
            listeners.add(check);
          }),
      }),
    );
    socket.once('error', reject);
  });
}

/** Connects, writes, and reports how the connection ended and what came back. */
function attempt(port: number, text: string): Promise<{ outcome: 'error' | 'closed'; received: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = '';
    let outcome: 'error' | 'closed' = 'closed';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    socket.on('error', () => (outcome = 'error'));
    socket.on('close', () => resolve({ outcome, received }));
    socket.write(text);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('startTcpFaultProxy', () => {
  let echo: Server;
  let echoPort: number;
  let proxy: TcpFaultProxy;
  const sockets: Socket[] = [];

  beforeEach(async () => {
    echo = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as AddressInfo).port;
    proxy = await startTcpFaultProxy({ target: { host: '127.0.0.1', port: echoPort } });
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await proxy.stop();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  async function open(): Promise<Client> {
    const c = await client(proxy.port);
    sockets.push(c.socket);
    return c;
  }

  it('relays bytes both ways', async () => {
    const c = await open();
    c.socket.write('hello');
    await c.waitFor('hello');
    expect(proxy.connections()).toBe(1);
    expect(proxy.address).toBe(`127.0.0.1:${proxy.port}`);
  });

  it('cut() resets open connections and refuses new ones until restore()', async () => {
    const c = await open();
    c.socket.write('before');
    await c.waitFor('before');
    proxy.cut();
    expect(await c.ended).toBe('error');
    expect(proxy.connections()).toBe(0);

    const refused = await attempt(proxy.port, 'ignored');
    expect(refused).toEqual({ outcome: 'error', received: '' });

    proxy.restore();
    const again = await open();
    again.socket.write('after');
    await again.waitFor('after');
  });

  it('pause() holds bytes in both directions without closing, resume() delivers them in order', async () => {
    const c = await open();
    c.socket.write('a');
    await c.waitFor('a');
    proxy.pause();
    c.socket.write('b');
    c.socket.write('c');
    await sleep(200);
    expect(c.received()).toBe('a');
    expect(c.socket.destroyed).toBe(false);
    proxy.resume();
    await c.waitFor('abc');
    expect(c.received()).toBe('abc');
  });

  it('passes a half-close through', async () => {
    const c = await open();
    c.socket.end('bye');
    await c.waitFor('bye');
    expect(await c.ended).toBe('closed');
  });

  it('resets the client when the target does not listen', async () => {
    const nowhere = await startTcpFaultProxy({ target: { host: '127.0.0.1', port: await freePort() } });
    try {
      const result = await attempt(nowhere.port, 'hello');
      expect(result.received).toBe('');
      expect(nowhere.connections()).toBe(0);
    } finally {
      await nowhere.stop();
    }
  });
});
