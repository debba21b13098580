/** The skill-runner service alone: what its container runs (STACK_SERVICES defaults to skill-runner here). */
import { runCli } from '@stack/runtime';
import { skillRunnerService } from '@stack/skill-runner';

process.env.STACK_SERVICES ??= 'skill-runner';
void runCli({ available: [skillRunnerService], argv: process.argv.slice(2) });
