import type { ServiceDefinition } from '@stack/runtime';

import { SkillRunnerModule } from './skill-runner.module';

export { SkillRunnerModule };

export const skillRunnerService: ServiceDefinition = {
  service: 'skill-runner',
  module: SkillRunnerModule,
  entities: [],
  migrations: [],
};
