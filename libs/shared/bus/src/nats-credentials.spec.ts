import { natsServersAndCredentials } from './nats-bus';

describe('NATS_URL credentials', () => {
  it('takes the user and password out of the server URLs', () => {
    expect(natsServersAndCredentials('nats://stack-audit:p%40ss@nats-0:4222, nats://nats-1:4222')).toEqual({ servers: ['nats://nats-0:4222', 'nats://nats-1:4222'], user: 'stack-audit', pass: 'p@ss' });
  });

  it('leaves URLs without credentials alone', () => {
    expect(natsServersAndCredentials('nats://127.0.0.1:4222')).toEqual({ servers: ['nats://127.0.0.1:4222'], user: undefined, pass: undefined });
  });
});
