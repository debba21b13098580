import type { ServiceDefinition } from '@stack/runtime';

import { PassportModule } from './passport.module';

export { PassportModule };

export const passportService: ServiceDefinition = {
  service: 'passport',
  module: PassportModule,
  entities: [],
  migrations: [],
};
