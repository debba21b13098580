import { ClientAddressResolver } from './client-address';

const req = (remoteAddress: string, xff?: string) => ({ socket: { remoteAddress }, headers: xff ? { 'x-forwarded-for': xff } : {} }) as never;

describe('ClientAddressResolver', () => {
  const resolver = new ClientAddressResolver(['10.0.0.0/8', '::1/128']);

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy', () => {
    expect(resolver.resolve(req('203.0.113.9', '1.2.3.4'))).toBe('203.0.113.9');
  });

  it('takes the last untrusted hop when the peer is a trusted proxy', () => {
    expect(resolver.resolve(req('10.1.2.3', '6.6.6.6, 198.51.100.7, 10.0.0.5'))).toBe('198.51.100.7');
    expect(resolver.resolve(req('::ffff:10.1.2.3', '198.51.100.8'))).toBe('198.51.100.8');
    expect(resolver.resolve(req('::1', '198.51.100.9'))).toBe('198.51.100.9');
  });

  it('falls back to the peer when a trusted proxy sends no header', () => {
    expect(resolver.resolve(req('10.1.2.3'))).toBe('10.1.2.3');
  });
});
