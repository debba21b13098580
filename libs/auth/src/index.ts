import type { ServiceDefinition } from '@stack/runtime';

import { AuthInit1764200000000 } from './auth-init.migration';
import { AuthModule } from './auth.module';
import { AuthRefreshGrace1765200000000 } from './refresh-grace.migration';

export { AuthModule };
export { adminCommand } from './cli/admin.command';

export const authService: ServiceDefinition = {
  service: 'auth',
  module: AuthModule,
  entities: [],
  migrations: [AuthInit1764200000000, AuthRefreshGrace1765200000000],
};
