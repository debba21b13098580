import { createLogger, MemoryLogDestination } from './logger';
import { MIN_SECRET_LENGTH, REDACTED, SecretRedactor } from './secret-redactor';

describe('SecretRedactor', () => {
  it('ignores secrets shorter than MIN_SECRET_LENGTH: one-character secrets leave every log line intact and valid JSON', () => {
    const out = new MemoryLogDestination();
    const logger = createLogger({ level: 'info', service: 'credential-proxy', instance: 'node-1', destination: out });
    for (const s of ['e', '"', '\\', ':', 'abc'.slice(0, MIN_SECRET_LENGTH - 1)]) logger.addSecret(s);
    logger.holdSecrets('connection:op:c1', ['e', '"']);
    logger.info({ path: '/repos/acme/app' }, 'every line here keeps its "e" and its quotes');
    const [line] = out.records();
    expect(line).toMatchObject({ msg: 'every line here keeps its "e" and its quotes', path: '/repos/acme/app' });
    expect(out.lines[0]).not.toContain(REDACTED);
  });

  it('matches a secret that needs JSON escaping only in its escaped spelling, so the line stays valid JSON', () => {
    const out = new MemoryLogDestination();
    const logger = createLogger({ level: 'info', service: 'credential-proxy', instance: 'node-1', destination: out });
    // Unescaped, this spelling appears in the line only as its syntax: `"a":"ab","b":"cd"`.
    const secret = 'ab","b":"cd';
    logger.addSecret(secret);
    logger.info({ a: 'ab', b: 'cd', v: secret }, 'tricky');
    const [line] = out.records();
    expect(line).toMatchObject({ a: 'ab', b: 'cd', v: REDACTED });
  });

  it('stays bounded across many refreshes: an owner keeps its current and previous secrets, older ones are forgotten', () => {
    const redactor = new SecretRedactor(['config-secret-value']);
    const token = (i: number) => `gho_token_${String(i).padStart(6, '0')}`;
    const refresh = 'ghr_refresh_unchanged';
    redactor.hold('connection:op:c1', [token(0), refresh]);
    const baseline = redactor.size;
    for (let i = 1; i <= 1000; i++) redactor.hold('connection:op:c1', [token(i), refresh]);
    expect(redactor.size).toBeLessThanOrEqual(baseline + 3);
    const text = `${token(1000)} ${token(999)} ${refresh} config-secret-value ${token(998)}`;
    expect(redactor.redact(text)).toBe(`${REDACTED} ${REDACTED} ${REDACTED} ${REDACTED} ${token(998)}`);
  });

  it('opening the current or the previous secret again drops neither, and other owners are untouched', () => {
    const redactor = new SecretRedactor();
    redactor.hold('connection:op:c2', ['other-connection-token']);
    redactor.hold('connection:op:c1', ['token-one-aaaa']);
    redactor.hold('connection:op:c1', ['token-two-bbbb']);
    // A replica still holding the old sealed row opens it again, then the new one.
    redactor.hold('connection:op:c1', ['token-one-aaaa']);
    redactor.hold('connection:op:c1', ['token-two-bbbb']);
    expect(redactor.redact('token-one-aaaa token-two-bbbb other-connection-token')).toBe(`${REDACTED} ${REDACTED} ${REDACTED}`);
    redactor.release('connection:op:c1');
    expect(redactor.redact('token-one-aaaa token-two-bbbb other-connection-token')).toBe(`token-one-aaaa token-two-bbbb ${REDACTED}`);
  });

  it('a secret both permanent and held stays redacted when its owner lets go of it', () => {
    const redactor = new SecretRedactor(['shared-secret-1234']);
    redactor.hold('connection:op:c1', ['shared-secret-1234']);
    redactor.hold('connection:op:c1', ['next-secret-5678']);
    redactor.hold('connection:op:c1', ['third-secret-9012']);
    expect(redactor.redact('shared-secret-1234')).toBe(REDACTED);
  });
});
