/**
 * The MCP gateway: what Claude Code and other MCP clients talk to. Tokens are verified
 * locally (one verifier per credential type), tools are answered by the owning services
 * over the bus.
 */
import { Module, type DynamicModule } from '@nestjs/common';

import { MCP_TOOLS, type ToolDef } from '@stack/contracts';
import { Credentials, CredentialsModule, serviceKitToken, type ServiceKit } from '@stack/runtime';

import { McpController } from './mcp.controller';
import { GATEWAY_TOOLS, McpService } from './mcp.service';
import { TOKEN_VERIFIERS, type TokenVerifier } from './principal';
import { ProtectedResourceController } from './protected-resource.controller';

export interface McpGatewayOptions {
  /** The tools offered (default: the contracts' catalogue). */
  tools?: readonly ToolDef[];
  /** The token verifiers, built with the gateway's kit (default: every credential type STACK issues). */
  verifiers?: (kit: ServiceKit) => TokenVerifier[];
}

/** Every credential STACK issues: API keys, OAuth access tokens for the MCP resource, passports. */
export function credentialsVerifier(credentials: Credentials): TokenVerifier {
  return {
    name: 'stack-credentials',
    accepts: () => true,
    async verify(token) {
      const r = await credentials.resolve(token, 'mcp');
      const rateKeys = [r.caller.member_id && `member:${r.caller.member_id}`, r.caller.agent_id && `agent:${r.caller.agent_id}`].filter((k): k is string => !!k);
      return { credential: r.kind, caller: { ...r.caller, issuer: 'mcp-gateway' }, rateKeys };
    },
  };
}

@Module({})
export class McpGatewayModule {
  static register(options: McpGatewayOptions = {}): DynamicModule {
    const own = options.verifiers;
    return {
      module: McpGatewayModule,
      imports: own ? [] : [CredentialsModule],
      controllers: [McpController, ProtectedResourceController],
      providers: [
        McpService,
        { provide: GATEWAY_TOOLS, useValue: options.tools ?? MCP_TOOLS },
        own
          ? { provide: TOKEN_VERIFIERS, useFactory: (kit: ServiceKit) => own(kit), inject: [serviceKitToken('mcp-gateway')] }
          : { provide: TOKEN_VERIFIERS, useFactory: (credentials: Credentials) => [credentialsVerifier(credentials)], inject: [Credentials] },
      ],
      exports: [McpService],
    };
  }
}
