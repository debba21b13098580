import { existsSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';

import { connect as natsConnect, StringCodec } from 'nats';
import type { ConnectionOptions, NatsConnection } from 'nats';

import { startNatsServer } from './nats-server';
import type { TestNatsServer } from './nats-server';

function tcpRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

describe('startNatsServer', () => {
  let server: TestNatsServer | undefined;
  const clients: NatsConnection[] = [];
  // A client left reconnecting would keep Jest from exiting after a failed assertion.
  const connect = async (options: ConnectionOptions): Promise<NatsConnection> => {
    const nc = await natsConnect(options);
    clients.push(nc);
    return nc;
  };
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => (c.isClosed() ? undefined : c.close())));
    await server?.stop();
    server = undefined;
  });

  it('starts a JetStream server of its own whose streams survive restart() on the same port', async () => {
    server = await startNatsServer({ jetstream: true });
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
    expect(server.port).not.toBe(4222);
    const sc = StringCodec();

    const first = await connect({ servers: server.url });
    const jsm = await first.jetstreamManager();
    await jsm.streams.add({ name: 'FAULT_TEST', subjects: ['fault.>'] });
    await first.jetstream().publish('fault.one', sc.encode('kept'));
    await first.close();

    const pidBefore = server.process()?.pid;
    await server.restart();
    expect(server.process()?.pid).not.toBe(pidBefore);

    const second = await connect({ servers: server.url });
    const info = await (await second.jetstreamManager()).streams.info('FAULT_TEST');
    expect(info.state.messages).toBe(1);
    const msg = await (await second.jetstreamManager()).streams.getMessage('FAULT_TEST', { seq: 1 });
    expect(sc.decode(msg.data)).toBe('kept');
    await second.close();
  });

  it('down() refuses connections until up(), and a reconnecting client comes back', async () => {
    server = await startNatsServer();
    const nc = await connect({ servers: server.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
    const statuses: string[] = [];
    const reconnected = new Promise<void>((resolve) => {
      void (async () => {
        for await (const s of nc.status()) {
          statuses.push(s.type);
          if (s.type === 'reconnect') resolve();
        }
      })();
    });

    await server.down({ signal: 'SIGKILL' });
    expect(await tcpRefused(server.port)).toBe(true);
    await server.up();
    await reconnected;
    await nc.flush();
    expect(statuses).toContain('disconnect');
  });

  it('stop() removes its store', async () => {
    const s = await startNatsServer();
    expect(existsSync(s.storeDir)).toBe(true);
    await s.stop();
    expect(existsSync(s.storeDir)).toBe(false);
    expect(await tcpRefused(s.port)).toBe(true);
  });
});
