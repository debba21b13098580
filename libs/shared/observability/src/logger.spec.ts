import { NestLoggerAdapter } from './nest-logger.adapter';
import { createLogger, MemoryLogDestination, type StackLogger } from './logger';
import { requestContext } from './request-context';
import { REDACTED } from './secret-redactor';

// The bus library's logger shape (libs/shared/bus/src/connection.ts), repeated here because the bus
// depends on this library and not the other way round. If the two drift, this stops compiling.
interface BusLoggerShape {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

function setup(secrets: string[] = [], level: 'info' | 'trace' = 'trace'): { out: MemoryLogDestination; logger: StackLogger } {
  const out = new MemoryLogDestination();
  return { out, logger: createLogger({ level, service: 'passport', instance: 'node-1', secrets, destination: out }) };
}

describe('createLogger', () => {
  it('writes one JSON line per call with level, time, service, instance and message', () => {
    const { out, logger } = setup();
    logger.info('hello');
    logger.warn({ count: 3 }, 'counted');
    const [first, second] = out.records();
    expect(out.lines).toHaveLength(2);
    expect(first).toMatchObject({ level: 'info', service: 'passport', instance: 'node-1', msg: 'hello' });
    expect(typeof first.time).toBe('string');
    expect(second).toMatchObject({ level: 'warn', count: 3, msg: 'counted' });
  });

  it('keeps format specifiers in messages as they are', () => {
    const { out, logger } = setup();
    logger.info('100%s sure %d');
    logger.info({ a: 1 }, '%o literal');
    expect(out.records().map((r) => r.msg)).toEqual(['100%s sure %d', '%o literal']);
  });

  it('filters by level', () => {
    const { out, logger } = setup([], 'info');
    logger.debug('hidden');
    logger.trace({ x: 1 }, 'hidden too');
    logger.error('shown');
    expect(out.records().map((r) => r.msg)).toEqual(['shown']);
    expect(logger.isLevelEnabled('debug')).toBe(false);
    expect(logger.isLevelEnabled('error')).toBe(true);
  });

  it('child loggers add their bindings', () => {
    const { out, logger } = setup();
    logger.child({ component: 'relay' }).child({ stream: 'STACK_AUDIT' }).info('tick');
    expect(out.records()[0]).toMatchObject({ component: 'relay', stream: 'STACK_AUDIT', service: 'passport', msg: 'tick' });
  });

  it('is usable where the bus expects its logger', () => {
    const { out, logger } = setup();
    const busLogger: BusLoggerShape = logger;
    busLogger.info({ subject: 'stack.passport.ping' }, 'request');
    expect(out.records()[0]).toMatchObject({ subject: 'stack.passport.ping', msg: 'request' });
  });

  it('serialises errors with message and stack', () => {
    const { out, logger } = setup();
    logger.error(new Error('boom'));
    logger.error({ err: new TypeError('bad type'), op: 'x' }, 'failed');
    const [a, b] = out.records();
    expect(a).toMatchObject({ msg: 'boom', err: { type: 'Error', message: 'boom' } });
    expect(String((a.err as { stack: string }).stack)).toContain('logger.spec.ts');
    expect(b).toMatchObject({ msg: 'failed', op: 'x', err: { type: 'TypeError', message: 'bad type' } });
  });
});

describe('secrets in log output', () => {
  const secret = 'sk_live_9f8e7d6c5b4a3210';

  it('never writes a registered secret, wherever it appears', () => {
    const { out, logger } = setup([secret]);
    logger.info(`token is ${secret}`);
    logger.info({ nested: { deeper: { list: ['a', `x${secret}y`] } }, note: secret }, 'fields');
    const err = new Error(`upstream refused ${secret}`);
    logger.error({ err }, 'error with secret in message and stack');
    logger.error(err);
    logger.warn({ cause: { inner: new Error(`inner ${secret}`) } }, 'nested error');
    logger.child({ bound: secret }).info('binding');
    logger.info({ [`key_${secret}`]: 1 }, 'secret in a key');

    expect(out.lines).toHaveLength(7);
    expect(out.text).not.toContain(secret);
    for (const line of out.lines) expect(line).toContain(REDACTED);
    // The error's stack made it to the output (redacted), it was not dropped.
    const withStack = out.records()[2] as { err: { stack: string; message: string } };
    expect(withStack.err.message).toBe(`upstream refused ${REDACTED}`);
    expect(withStack.err.stack).toContain(`Error: upstream refused ${REDACTED}`);
    expect((out.records()[4] as { cause: { inner: { message: string } } }).cause.inner.message).toBe(`inner ${REDACTED}`);
  });

  it('redacts secrets registered at run time, in all children, from then on', () => {
    const { out, logger } = setup();
    const child = logger.child({ component: 'vault' });
    const decrypted = 'ghp_decryptedUpstreamToken42';
    child.addSecret(decrypted);
    logger.info({ value: decrypted }, 'root');
    child.info(`child ${decrypted}`);
    expect(out.text).not.toContain(decrypted);
    expect(out.records().map((r) => r.value ?? r.msg)).toEqual([REDACTED, `child ${REDACTED}`]);
  });

  it('releaseSecrets forgets what an owner held, except values configured as secrets or held by another owner', () => {
    const configured = 'config-secret-1234';
    const { out, logger } = setup([configured]);
    const child = logger.child({ component: 'vault' });
    child.holdSecrets('connection:op:c1', ['only-c1-token-aaaa', 'shared-token-bbbb', configured]);
    child.holdSecrets('connection:op:c2', ['shared-token-bbbb']);
    logger.releaseSecrets('connection:op:c1');
    logger.info('only-c1-token-aaaa shared-token-bbbb config-secret-1234');
    expect(out.records()[0].msg).toBe(`only-c1-token-aaaa ${REDACTED} ${REDACTED}`);
  });

  it('redacts the JSON-escaped and URL-encoded spellings of a secret', () => {
    const tricky = 'pa"ss\\wo\nrd/ü+&=';
    const { out, logger } = setup([tricky]);
    logger.info({ v: tricky }, 'escaped');
    logger.info({ url: `https://api.example/cb?k=${encodeURIComponent(tricky)}` }, 'encoded');
    expect(out.text).not.toContain(JSON.stringify(tricky).slice(1, -1));
    expect(out.text).not.toContain(encodeURIComponent(tricky));
    const [a, b] = out.records();
    expect(a.v).toBe(REDACTED);
    expect(b.url).toBe(`https://api.example/cb?k=${REDACTED}`);
  });

  it('redacts a longer secret whole even when a shorter one is inside it', () => {
    const { out, logger } = setup(['abcd', 'xxabcdxx']);
    logger.info('v=xxabcdxx');
    expect(out.records()[0].msg).toBe(`v=${REDACTED}`);
  });

  it('redacts fields with credential names at any depth, without a registered value', () => {
    const { out, logger } = setup();
    logger.info(
      {
        req: { headers: { authorization: 'Bearer abc.def', Cookie: 'sid=1', 'x-api-key': 'k1', accept: 'json' } },
        body: { user: { password: 'hunter2', name: 'ann' }, client_secret: 'cs', refreshToken: 'rt', passport_token: 'pt' },
        credential: { token: 'ct' },
        token_type: 'Bearer',
        tokens_used: 12,
      },
      'request',
    );
    logger.child({ apiKey: 'bound-key' }).info('bound');
    const [r, bound] = out.records() as [Record<string, Record<string, Record<string, unknown>>>, Record<string, unknown>];
    expect(r.req.headers).toEqual({ authorization: REDACTED, Cookie: REDACTED, 'x-api-key': REDACTED, accept: 'json' });
    expect(r.body.user).toEqual({ password: REDACTED, name: 'ann' });
    expect(r.body).toMatchObject({ client_secret: REDACTED, refreshToken: REDACTED, passport_token: REDACTED });
    expect(r.credential).toBe(REDACTED);
    expect(r.token_type).toBe('Bearer');
    expect(r.tokens_used).toBe(12);
    expect(bound.apiKey).toBe(REDACTED);
    for (const value of ['abc.def', 'sid=1', 'hunter2', 'bound-key', '"rt"', '"pt"', '"ct"']) expect(out.text).not.toContain(value);
  });

  it('does not modify the objects it is given', () => {
    const { logger } = setup();
    const fields = { headers: { authorization: 'Bearer abc' } };
    logger.info(fields, 'x');
    expect(fields.headers.authorization).toBe('Bearer abc');
  });

  it('survives circular structures', () => {
    const { out, logger } = setup();
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    logger.info({ a }, 'cycle');
    expect(out.records()[0]).toMatchObject({ a: { name: 'a', self: '[Circular]' } });
  });
});

describe('correlation fields', () => {
  it('adds request_id and trace ids inside a request context, and nothing outside', async () => {
    const { out, logger } = setup();
    logger.info('outside');
    await requestContext.run({ requestId: 'req_abc', traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' }, async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      logger.info('inside, after an await');
    });
    const [outside, inside] = out.records();
    expect(outside).not.toHaveProperty('request_id');
    expect(outside).not.toHaveProperty('trace_id');
    expect(inside).toMatchObject({ request_id: 'req_abc', trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: 'b7ad6b7169203331' });
  });
});

describe('createLogger options', () => {
  it('names a wrong option', () => {
    expect(() => createLogger({ level: 'loud' as 'info', service: 's', instance: 'i', destination: new MemoryLogDestination() })).toThrow(/level must be one of/);
    expect(() => createLogger({ level: 'info', service: '', instance: 'i', destination: new MemoryLogDestination() })).toThrow(/service must be a non-empty string/);
  });
});

describe('NestLoggerAdapter', () => {
  it("routes Nest's calls with their context, stack and level", () => {
    const { out, logger } = setup(['nest-secret-value']);
    const nest = new NestLoggerAdapter(logger);
    nest.log('Mapped {/v1/agents, GET} route', 'RouterExplorer');
    nest.error('Unhandled', 'Error: x\n    at foo (file.ts:1:1)', 'ExceptionsHandler');
    nest.warn({ shape: 'object', leaked: 'nest-secret-value' });
    nest.verbose('very detailed', 'InstanceLoader');
    nest.error(new Error('thrown'), 'Bootstrap');
    const [log, error, warn, verbose, thrown] = out.records();
    expect(log).toMatchObject({ level: 'info', context: 'RouterExplorer', msg: 'Mapped {/v1/agents, GET} route' });
    expect(error).toMatchObject({ level: 'error', context: 'ExceptionsHandler', stack: 'Error: x\n    at foo (file.ts:1:1)', msg: 'Unhandled' });
    expect(warn).toMatchObject({ level: 'warn', data: { shape: 'object', leaked: REDACTED } });
    expect(verbose).toMatchObject({ level: 'trace', context: 'InstanceLoader' });
    expect(thrown).toMatchObject({ level: 'error', context: 'Bootstrap', msg: 'thrown', err: { message: 'thrown' } });
  });

  it('honours setLogLevels', () => {
    const { out, logger } = setup();
    const nest = new NestLoggerAdapter(logger);
    nest.setLogLevels(['error', 'warn']);
    nest.log('dropped');
    nest.debug('dropped');
    nest.warn('kept');
    expect(out.records().map((r) => r.msg)).toEqual(['kept']);
  });
});
