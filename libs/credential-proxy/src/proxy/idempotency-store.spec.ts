import { canonicalise, requestTarget } from './canonical-request';
import { fingerprintOf } from './idempotency-store';

const base = new URL('https://api.github.com');

describe('idempotency fingerprint', () => {
  const req = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', body: { title: 'once' } }, base);
  const print = (channel: string, r = req) => fingerprintOf('scon_1', r, requestTarget(r), channel);

  it('is the same for the same request on the same channel', () => {
    expect(print('rest')).toBe(print('rest'));
  });

  it('differs between channels: an answer stored for the tool (cut to 1 MB) is not one REST may replay', () => {
    expect(print('bus')).not.toBe(print('rest'));
  });

  it('differs for another body, path or connection', () => {
    const other = canonicalise({ method: 'POST', path: '/repos/acme/app/issues', body: { title: 'twice' } }, base);
    expect(print('rest', other)).not.toBe(print('rest'));
    const path = canonicalise({ method: 'POST', path: '/repos/acme/other/issues', body: { title: 'once' } }, base);
    expect(print('rest', path)).not.toBe(print('rest'));
    expect(fingerprintOf('scon_2', req, requestTarget(req), 'rest')).not.toBe(print('rest'));
  });
});
