/** The auth service alone: what its container runs (STACK_SERVICES defaults to auth here). */
import { runCli } from '@stack/runtime';
import { authService } from '@stack/auth';

process.env.STACK_SERVICES ??= 'auth';
void runCli({ available: [authService], argv: process.argv.slice(2) });
