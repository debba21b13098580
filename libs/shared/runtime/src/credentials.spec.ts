import { randomBytes } from 'node:crypto';

import type { BusConnection } from '@stack/bus';
import type { StackConfig } from '@stack/config';
import { StackError, type CallerContext } from '@stack/contracts';
import { CallerContextSigner } from '@stack/security';

import { Credentials } from './credentials.module';
import type { RevocationHost } from './revocation.module';

describe('Credentials (REST callers)', () => {
  const secret = randomBytes(32);
  const requests: unknown[] = [];
  let revoked: (() => void) | undefined;
  const bus = {
    request: async (_cmd: unknown, payload: { api_key: string }) => {
      requests.push(payload);
      if (payload.api_key !== 'sk_live_good') throw new StackError('UNAUTHORIZED', 'unknown API key');
      return { api_key_id: 'key_1', operator_id: 'op_1', member_id: 'mem_1', role: 'admin', scopes: ['stack:passports', 'stack:admin'] };
    },
  };
  const connection = { forService: () => bus } as unknown as BusConnection;
  const config = { internalSecret: secret.toString('base64'), publicUrl: 'http://stack.test', services: ['passport'] } as unknown as StackConfig;
  const host = {
    state: {
      check: () => undefined,
      assertFresh: () => undefined,
      onRevoked: (l: () => void) => {
        revoked = l;
        return () => undefined;
      },
    },
  } as unknown as RevocationHost;
  const credentials = new Credentials(connection, config, host);

  beforeEach(() => requests.splice(0));

  it('refuses a missing, malformed or unknown credential', async () => {
    await expect(credentials.restCaller(undefined)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(credentials.restCaller('Basic abc')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(credentials.restCaller('Bearer not.a.token')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('resolves an API key through auth on the bus, caches it, and forgets it on a revocation', async () => {
    const expected = { issuer: 'auth', kind: 'member', operator_id: 'op_1', member_id: 'mem_1', scopes: ['stack:passports', 'stack:admin'] };
    expect((await credentials.restCaller('Bearer sk_live_good')).caller).toEqual(expected);
    expect((await credentials.restCaller('Bearer sk_live_good')).caller).toEqual(expected);
    expect(requests).toHaveLength(1);
    revoked?.();
    await credentials.restCaller('Bearer sk_live_good');
    expect(requests).toHaveLength(2);
    await expect(credentials.restCaller('Bearer sk_live_bad')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('accepts a caller context signed with the internal secret, and only that secret', async () => {
    const caller: CallerContext = { issuer: 'auth', kind: 'member', operator_id: 'op_2', member_id: 'mem_2', scopes: [] };
    expect((await credentials.restCaller(`Bearer ${new CallerContextSigner(secret).sign(caller)}`)).caller).toEqual(caller);
    await expect(credentials.restCaller(`Bearer ${new CallerContextSigner(randomBytes(32)).sign(caller)}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('refuses a service’s own (system) context lifted off the bus', async () => {
    const system: CallerContext = { issuer: 'passport', kind: 'system', scopes: [] };
    await expect(credentials.restCaller(`Bearer ${new CallerContextSigner(secret).sign(system)}`)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });
});
