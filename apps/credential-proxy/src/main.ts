/** The credential-proxy service alone: what its container runs (STACK_SERVICES defaults to credential-proxy here). */
import { runCli } from '@stack/runtime';
import { credentialProxyService } from '@stack/credential-proxy';

process.env.STACK_SERVICES ??= 'credential-proxy';
void runCli({ available: [credentialProxyService], argv: process.argv.slice(2) });
