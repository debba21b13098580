/** The passport service alone: what its container runs (STACK_SERVICES defaults to passport here). */
import { runCli } from '@stack/runtime';
import { passportService } from '@stack/passport';

process.env.STACK_SERVICES ??= 'passport';
void runCli({ available: [passportService], argv: process.argv.slice(2) });
