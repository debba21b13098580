/** The mcp-gateway service alone: what its container runs (STACK_SERVICES defaults to mcp-gateway here). */
import { runCli } from '@stack/runtime';
import { mcpGatewayService } from '@stack/mcp-gateway';

process.env.STACK_SERVICES ??= 'mcp-gateway';
void runCli({ available: [mcpGatewayService], argv: process.argv.slice(2) });
