import type { ServiceDefinition } from '@stack/runtime';

import { CredentialProxyModule } from './credential-proxy.module';

export { CredentialProxyModule };

export const credentialProxyService: ServiceDefinition = {
  service: 'credential-proxy',
  module: CredentialProxyModule,
  entities: [],
  migrations: [],
};
