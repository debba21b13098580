/**
 * `stack`: all six services in one process (the embedded default of `npm start`), any
 * subset of them with STACK_SERVICES, and the admin commands.
 */
import { auditCliCommand, auditService } from '@stack/audit';
import { adminCommand, authService } from '@stack/auth';
import { credentialProxyService, rotateMasterKeyCommand } from '@stack/credential-proxy';
import { mcpGatewayService } from '@stack/mcp-gateway';
import { passportService } from '@stack/passport';
import { runCli } from '@stack/runtime';
import { skillRunnerService } from '@stack/skill-runner';

void runCli({
  available: [authService, mcpGatewayService, credentialProxyService, passportService, skillRunnerService, auditService],
  argv: process.argv.slice(2),
  commands: {
    admin: {
      summary: `${adminCommand.summary}; ${rotateMasterKeyCommand.summary}`,
      run: (args, available) => (args[0] === 'rotate-master-key' ? rotateMasterKeyCommand.run(args.slice(1), available) : adminCommand.run(args, available)),
    },
    audit: auditCliCommand,
  },
});
