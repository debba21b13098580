/** The audit service alone: what its container runs (STACK_SERVICES defaults to audit here). */
import { runCli } from '@stack/runtime';
import { auditService } from '@stack/audit';

process.env.STACK_SERVICES ??= 'audit';
void runCli({ available: [auditService], argv: process.argv.slice(2) });
