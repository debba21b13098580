import { DEFAULT_SCOPES } from '@stack/contracts';

import { authorizationDefaults } from './oidc-provider.service';

const params = (url: string | undefined) => Object.fromEntries(new URL(url ?? '/', 'http://x').searchParams);

describe('authorizationDefaults', () => {
  it('gives a request without a scope the default scopes, offline_access and prompt=consent', () => {
    expect(params(authorizationDefaults('/oauth/authorize?client_id=c'))).toEqual({ client_id: 'c', scope: [...DEFAULT_SCOPES, 'offline_access'].join(' '), prompt: 'consent' });
  });

  it('adds consent to the prompt of a request for offline_access, keeping its other prompts', () => {
    expect(params(authorizationDefaults('/oauth/authorize?scope=stack%3Aservices+offline_access'))).toEqual({ scope: 'stack:services offline_access', prompt: 'consent' });
    expect(params(authorizationDefaults('/oauth/authorize?scope=offline_access&prompt=login'))).toEqual({ scope: 'offline_access', prompt: 'login consent' });
  });

  it('leaves a request alone that already says consent, says prompt=none, or does not ask for offline_access', () => {
    expect(authorizationDefaults('/oauth/authorize?scope=offline_access&prompt=consent')).toBeUndefined();
    expect(authorizationDefaults('/oauth/authorize?scope=offline_access&prompt=none')).toBeUndefined();
    expect(authorizationDefaults('/oauth/authorize?scope=stack%3Aservices')).toBeUndefined();
  });
});
