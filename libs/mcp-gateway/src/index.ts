import type { ServiceDefinition } from '@stack/runtime';

import { McpGatewayModule } from './mcp-gateway.module';

export { McpGatewayModule };

export const mcpGatewayService: ServiceDefinition = {
  service: 'mcp-gateway',
  module: McpGatewayModule,
  entities: [],
  migrations: [],
};
