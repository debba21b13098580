import type { ServiceDefinition } from '@stack/runtime';

import { AuthModule } from './auth.module';

export { AuthModule };

export const authService: ServiceDefinition = {
  service: 'auth',
  module: AuthModule,
  entities: [],
  migrations: [],
};
