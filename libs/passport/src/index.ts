import { Credentials, type ServiceDefinition } from '@stack/runtime';

import { DropoffRest, dropoffFastRoutes } from './dropoffs/dropoff.controller';
import { DropoffService } from './dropoffs/dropoff.service';
import { DropoffKeyStore } from './dropoffs/dropoff.store';
import { PassportModule } from './passport.module';
import { PassportDropoffs1764900000000, PassportDropoffsUnusedIndex1765000000000 } from './dropoffs/dropoff.migration';
import { PassportInit1764300000000 } from './store/passport-init.migration';
import { PassportLineage1765100000000 } from './store/passport-lineage.migration';

export { PassportModule };
export { PassportService } from './passports/passport.service';
export { DropoffService };
export { CALLER_RESOLVER, type CallerResolver } from './api/caller-resolver';

export const passportService: ServiceDefinition = {
  service: 'passport',
  module: PassportModule,
  entities: [],
  migrations: [PassportInit1764300000000, PassportDropoffs1764900000000, PassportDropoffsUnusedIndex1765000000000, PassportLineage1765100000000],
  sealedValues: (dataSource) => [{ label: 'drop-off payload(s)', store: new DropoffKeyStore(dataSource) }],
  fastRoutes: (app) => dropoffFastRoutes(new DropoffRest(app.get(DropoffService, { strict: false }), app.get(Credentials, { strict: false }))),
};
