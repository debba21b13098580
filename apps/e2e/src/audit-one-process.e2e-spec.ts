/** The audit log in the one-process shape (embedded Postgres, in-process bus). */
import { generateStackSecrets, startOneProcessStack, type OneProcessStack } from '@stack/testing';

import { expectOperatorsIsolated, expectReadsRecordedAndProven, type AuditTarget } from './support/audit-checks';

describe('audit log, one process', () => {
  let stack: OneProcessStack;
  let target: AuditTarget;

  beforeAll(async () => {
    const { internalSecret } = generateStackSecrets();
    stack = await startOneProcessStack({ env: { STACK_INTERNAL_SECRET: internalSecret, STACK_AUDIT_CHECKPOINT_INTERVAL_MS: '300' }, logLevel: 'warn' });
    target = { publicUrl: stack.publicUrl, internalSecret };
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('records reads, signs checkpoints, proves inclusion and consistency, and its export verifies offline', async () => {
    await expectReadsRecordedAndProven(target, 'op_one_a');
  }, 120_000);

  it("never shows another operator's entries", async () => {
    await expectOperatorsIsolated(target, 'op_one_a', 'op_one_b');
  }, 120_000);
});
