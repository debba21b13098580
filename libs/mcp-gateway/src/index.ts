import type { ServiceDefinition } from '@stack/runtime';

import { McpGatewayModule } from './mcp-gateway.module';

export { McpGatewayModule, type McpGatewayOptions } from './mcp-gateway.module';
export { McpService, GATEWAY_TOOLS, MAX_TOOL_RESULT_BYTES } from './mcp.service';
export { TOKEN_VERIFIERS, type Principal, type TokenVerifier } from './principal';

export const mcpGatewayService: ServiceDefinition = {
  service: 'mcp-gateway',
  module: McpGatewayModule.register(),
  entities: [],
  migrations: [],
  rawBodyPaths: ['/mcp'],
};
