/** The OpenAPI check in the end-to-end suites can fail: it refuses a broken document. */
import { validate } from '@readme/openapi-parser';

describe('OpenAPI validation used by the end-to-end checks', () => {
  it('refuses a document that breaks the specification', async () => {
    const broken = { openapi: '3.0.3', info: { title: 'x' }, paths: { 'no-leading-slash': { get: { responses: {} } } } };
    const result = await validate(broken as unknown as Parameters<typeof validate>[0]);
    expect(result.valid).toBe(false);
  });

  it('accepts a minimal valid document', async () => {
    const ok = { openapi: '3.0.3', info: { title: 'x', version: '1' }, paths: {} };
    const result = await validate(ok as unknown as Parameters<typeof validate>[0]);
    expect(result.valid).toBe(true);
  });
});
