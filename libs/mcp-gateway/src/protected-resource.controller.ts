/**
 * RFC 9728 protected-resource metadata for /mcp, at both well-known locations: how an MCP
 * client learns which authorization server to sign in with and which scopes exist.
 */
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';

import { STACK_SCOPES, mcpResource } from '@stack/contracts';
import { serviceKitToken, type ServiceKit } from '@stack/runtime';

@ApiExcludeController()
@Controller('.well-known')
export class ProtectedResourceController {
  constructor(@Inject(serviceKitToken('mcp-gateway')) private readonly kit: ServiceKit) {}

  @Get(['oauth-protected-resource', 'oauth-protected-resource/mcp'])
  @Header('Cache-Control', 'public, max-age=300')
  metadata(): Record<string, unknown> {
    const config = this.kit.config;
    return {
      resource: mcpResource(config.publicUrl),
      authorization_servers: [config.publicUrl],
      // offline_access too: a client that picks its scopes from this list then gets a refresh token.
      scopes_supported: [...STACK_SCOPES, 'offline_access'],
      bearer_methods_supported: ['header'],
      resource_name: 'STACK',
      resource_documentation: `${config.publicUrl}/v1/openapi.json`,
    };
  }
}
