/**
 * Drop-offs on the real Postgres and NATS: custody passes exactly once, nothing is left behind,
 * and only the right agents of the right operator touch them. Driven over the bus as the MCP
 * gateway drives it; the end-to-end tests drive REST and /mcp.
 */
import { randomBytes } from 'node:crypto';

import type { Bus, BusConnection, Handle } from '@stack/bus';
import { AuditRecordedEvent, DROPOFF_COMMANDS, DropoffDepositedEvent, PASSPORT_COMMANDS, StackError, type CallerContext } from '@stack/contracts';
import { RevocationHost, type RunningStack } from '@stack/runtime';
import { uniqueName } from '@stack/testing';

import { EnvelopeCipher, KeyRotation, Keyring } from '@stack/security';

import { startPassportUnderTest, type PassportUnderTest } from '../testing/passport-under-test';
import { DropoffService } from './dropoff.service';
import { DropoffKeyStore } from './dropoff.store';

const D = DROPOFF_COMMANDS;
const SECRET_MARK = `s3cret-${randomBytes(8).toString('hex')}`;

const schema = {
  type: 'object',
  required: ['summary', 'findings'],
  additionalProperties: false,
  properties: { summary: { type: 'string', minLength: 1 }, findings: { type: 'array', items: { type: 'object', required: ['file', 'line'], properties: { file: { type: 'string' }, line: { type: 'integer', minimum: 1 } } } } },
};
const good = { summary: `review done ${SECRET_MARK}`, findings: [{ file: 'src/app.ts', line: 12 }] };

describe('drop-offs (real Postgres and NATS)', () => {
  let under: PassportUnderTest;
  let stack: RunningStack;
  let client: BusConnection;
  let gw: Bus;
  const operator = `op_${randomBytes(4).toString('hex')}`;
  const member: CallerContext = { issuer: 'mcp-gateway', kind: 'member', operator_id: operator, member_id: 'mem_1', scopes: ['stack:passports', 'stack:dropoffs'] };
  const agents: Record<string, string> = {};
  const asAgent = (name: string, op = operator): CallerContext => ({ issuer: 'passport', kind: 'agent', operator_id: op, member_id: 'mem_1', agent_id: agents[name], passport_jti: `ppt_${name}`, scopes: ['stack:services', 'stack:dropoffs'] });
  /** The agent with a passport actually issued (what a wait checks again). */
  const withPassport = async (name: string): Promise<CallerContext> => ({ ...asAgent(name), passport_jti: (await gw.request(PASSPORT_COMMANDS.issuePassport, { agent_id: agents[name]! }, { caller: member })).jti });
  const audit: string[] = [];
  const deposited: unknown[] = [];
  const handles: Handle[] = [];

  const codeOf = async (p: Promise<unknown>): Promise<{ code?: string; details?: Record<string, unknown> }> => {
    try {
      await p;
      return {};
    } catch (err) {
      return err instanceof StackError ? { code: err.code, details: err.details } : { code: `not a StackError: ${(err as Error).message}` };
    }
  };
  const rowOf = async (id: string) => ((await stack.dataSources.get('passport')!.query(`SELECT * FROM passport.dropoffs WHERE id = $1`, [id])) as Array<Record<string, unknown>>)[0]!;

  beforeAll(async () => {
    under = await startPassportUnderTest({ name: 'drp', env: { STACK_DROPOFF_SWEEP_MS: '200' }, busTimeoutMs: 10_000 });
    ({ stack, client, gateway: gw } = under);
    for (const name of ['writer', 'reader', 'reader-two', 'bystander']) agents[name] = ((await gw.request(PASSPORT_COMMANDS.registerAgent, { name }, { caller: member })) as { id: string }).id;
    handles.push(await client.forService('audit').consume({ durable: uniqueName('aud'), events: [AuditRecordedEvent] }, async (_e, p) => void audit.push(JSON.stringify(p))));
    handles.push(await client.forService('audit').consume({ durable: uniqueName('evt'), events: [DropoffDepositedEvent] }, async (_e, p) => void deposited.push(p)));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(handles.map((h) => h.stop()));
    await under?.stop();
  });

  it('hands a payload over once: create, deposit, collect; the ciphertext never holds the plaintext and is gone after', async () => {
    const created = await gw.request(D.create, { to_agent: 'reader', schema }, { caller: asAgent('writer') });
    expect(created).toMatchObject({ status: 'created', to_agents: [agents.reader], created_by: { agent_id: agents.writer } });
    expect(await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_NOT_DEPOSITED' });

    const dep = await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') });
    expect(dep.status).toBe('deposited');
    const stored = await rowOf(created.id);
    const sealed = JSON.stringify(stored.ciphertext);
    expect(sealed).not.toContain(SECRET_MARK);
    expect(sealed).not.toContain(Buffer.from(SECRET_MARK).toString('base64'));
    expect(sealed).not.toContain('src/app.ts');
    expect(await codeOf(gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') }))).toMatchObject({ code: 'DROPOFF_ALREADY_DEPOSITED' });

    const got = await gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') });
    expect(got).toMatchObject({ dropoff_id: created.id, payload: good, collected_by: agents.reader, created_by: { agent_id: agents.writer } });
    const after = await rowOf(created.id);
    expect(after).toMatchObject({ status: 'collected', ciphertext: null, collected_by: agents.reader });
    expect(await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_ALREADY_COLLECTED', details: { collected_by: agents.reader } });

    // The deposited event says that and who, never what.
    for (let i = 0; i < 50 && !deposited.some((e) => (e as { dropoff_id: string }).dropoff_id === created.id); i++) await new Promise((r) => setTimeout(r, 100));
    const event = deposited.find((e) => (e as { dropoff_id: string }).dropoff_id === created.id);
    expect(event).toMatchObject({ dropoff_id: created.id, operator_id: operator, to_agents: [agents.reader], created_by_agent: agents.writer });
    expect(JSON.stringify(event)).not.toContain(SECRET_MARK);
  });

  it('refuses a payload that breaks the schema with JSON pointers, and stays open for a correct one', async () => {
    const created = await gw.request(D.create, { to_agent: agents.reader!, schema }, { caller: asAgent('writer') });
    const bad = await codeOf(gw.request(D.deposit, { dropoff_id: created.id, payload: { summary: '', findings: [{ file: 'a', line: 0 }], extra: true } }, { caller: asAgent('writer') }));
    expect(bad.code).toBe('SCHEMA_VALIDATION_FAILED');
    const pointers = (bad.details!.errors as Array<{ pointer: string }>).map((e) => e.pointer).sort();
    expect(pointers).toEqual(['', '/findings/0/line', '/summary']);
    expect((await rowOf(created.id)).status).toBe('created');
    expect((await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') })).status).toBe('deposited');
    // Creating with a payload checks it the same way, and a bad one creates nothing.
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema, payload: { summary: 1 } }, { caller: asAgent('writer') }))).code).toBe('SCHEMA_VALIDATION_FAILED');
  });

  it('ten concurrent collectors: exactly one gets the payload, the others learn who took it', async () => {
    const created = await gw.request(D.create, { to_agents: ['reader', 'reader-two'], schema, payload: good }, { caller: asAgent('writer') });
    expect(created.status).toBe('deposited');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent(i % 2 ? 'reader' : 'reader-two') }))));
    const winners = results.filter((r) => r.code === undefined);
    expect(winners).toHaveLength(1);
    const losers = results.filter((r) => r.code !== undefined);
    expect(losers.map((l) => l.code)).toEqual(Array(9).fill('DROPOFF_ALREADY_COLLECTED'));
    const collector = (await rowOf(created.id)).collected_by;
    expect(new Set(losers.map((l) => l.details!.collected_by))).toEqual(new Set([collector]));
  });

  it('expires: the sweeper purges the ciphertext, and collect says DROPOFF_EXPIRED', async () => {
    const created = await gw.request(D.create, { to_agent: 'reader', schema, payload: good, ttl_seconds: 10 }, { caller: asAgent('writer') });
    expect((await rowOf(created.id)).ciphertext).not.toBeNull();
    // Time passes (the TTL's floor is 10 s; the row is moved instead of the clock).
    await stack.dataSources.get('passport')!.query(`UPDATE passport.dropoffs SET expires_at = now() - interval '1 second' WHERE id = $1`, [created.id]);
    let row = await rowOf(created.id);
    for (let i = 0; i < 50 && row.status !== 'expired'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      row = await rowOf(created.id);
    }
    expect(row).toMatchObject({ status: 'expired', ciphertext: null });
    expect(await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_EXPIRED' });
  });

  it('checks expiry at read time too, whatever the sweeper does', async () => {
    const created = await gw.request(D.create, { to_agent: 'reader', schema, payload: good }, { caller: asAgent('writer') });
    await stack.dataSources.get('passport')!.query(`UPDATE passport.dropoffs SET expires_at = now() - interval '1 second' WHERE id = $1`, [created.id]);
    expect(await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_EXPIRED' });
    expect(await rowOf(created.id)).toMatchObject({ status: 'expired', ciphertext: null });
  });

  it("deposits without reading the creator's own drop-off first, and the guarded write still decides", async () => {
    const ds = stack.dataSources.get('passport')!;
    const created = await gw.request(D.create, { to_agent: agents.reader!, schema }, { caller: asAgent('writer') });
    const reads = jest.spyOn(ds, 'query');
    try {
      expect((await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') })).status).toBe('deposited');
      expect(reads.mock.calls.filter(([sql]) => /FROM "?passport"?\."?dropoffs"?/.test(String(sql)))).toHaveLength(0);
    } finally {
      reads.mockRestore();
    }
    // Changed behind the instance's back (expired in SQL): the deposit is refused by the UPDATE's guard, nothing written.
    const other = await gw.request(D.create, { to_agent: agents.reader!, schema }, { caller: asAgent('writer') });
    await ds.query(`UPDATE passport.dropoffs SET expires_at = now() - interval '1 second' WHERE id = $1`, [other.id]);
    expect(await codeOf(gw.request(D.deposit, { dropoff_id: other.id, payload: good }, { caller: asAgent('writer') }))).toMatchObject({ code: 'DROPOFF_EXPIRED' });
    expect(await rowOf(other.id)).toMatchObject({ status: 'expired', ciphertext: null });
  });

  it('collects what it sealed here without reading it first; the guarded write still decides', async () => {
    const ds = stack.dataSources.get('passport')!;
    const dropoffReads = (spy: jest.SpyInstance) => spy.mock.calls.filter(([sql]) => /FROM "?passport"?\."?dropoffs"?/.test(String(sql)));
    for (const twoSteps of [false, true]) {
      const created = await gw.request(D.create, { to_agent: agents.reader!, schema, ...(twoSteps ? {} : { payload: good }) }, { caller: asAgent('writer') });
      if (twoSteps) await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') });
      const reads = jest.spyOn(ds, 'query');
      try {
        expect((await gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') })).payload).toEqual(good);
        expect(dropoffReads(reads)).toHaveLength(0);
      } finally {
        reads.mockRestore();
      }
      expect(await rowOf(created.id)).toMatchObject({ status: 'collected', ciphertext: null, collected_by: agents.reader });
      expect(await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_ALREADY_COLLECTED' });
    }
    // Not addressed to the caller: refused as before, and the addressee still collects it.
    const forReader = await gw.request(D.create, { to_agent: agents.reader!, schema, payload: good }, { caller: asAgent('writer') });
    expect(await codeOf(gw.request(D.collect, { dropoff_id: forReader.id }, { caller: asAgent('bystander') }))).toMatchObject({ code: 'FORBIDDEN' });
    expect(await codeOf(gw.request(D.collect, { dropoff_id: forReader.id }, { caller: asAgent('reader', `op_${randomBytes(4).toString('hex')}`) }))).toMatchObject({ code: 'NOT_FOUND' });
    expect((await gw.request(D.collect, { dropoff_id: forReader.id }, { caller: asAgent('reader') })).payload).toEqual(good);
    // Collected behind this instance's back (another replica): the UPDATE matches nothing, and the caller learns who took it.
    const elsewhere = await gw.request(D.create, { to_agent: agents.reader!, schema, payload: good }, { caller: asAgent('writer') });
    await ds.query(`UPDATE passport.dropoffs SET status = 'collected', ciphertext = NULL, collected_at = now(), collected_by = $2 WHERE id = $1`, [elsewhere.id, agents['reader-two']]);
    expect(await codeOf(gw.request(D.collect, { dropoff_id: elsewhere.id }, { caller: asAgent('reader') }))).toMatchObject({ code: 'DROPOFF_ALREADY_COLLECTED', details: { collected_by: agents['reader-two'] } });
  });

  it('falls back to the row when its own sealed copy no longer opens (the key re-wrapped away and retired)', async () => {
    const ds = stack.dataSources.get('passport')!;
    const service = stack.app.get(DropoffService, { strict: false }) as unknown as { cipher: EnvelopeCipher };
    const created = await gw.request(D.create, { to_agent: agents.reader!, schema, payload: good }, { caller: asAgent('writer') });
    const oldKeys = stack.config.masterKeys!;
    const next = Keyring.generateEntry('rot3');
    const store = new DropoffKeyStore(ds);
    expect((await new KeyRotation(store, new EnvelopeCipher(Keyring.parse(`${next},${oldKeys}`))).rewrapAll()).failed).toBe(0);
    const running = service.cipher;
    service.cipher = new EnvelopeCipher(Keyring.parse(next)); // the old key retired
    try {
      expect((await gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') })).payload).toEqual(good);
    } finally {
      service.cipher = running;
      await new KeyRotation(store, new EnvelopeCipher(Keyring.parse(`${oldKeys},${next}`))).rewrapAll();
    }
    expect(await rowOf(created.id)).toMatchObject({ status: 'collected', ciphertext: null });
  });

  it('keeps only the indexes its statements use (a deposit or collection writes every one of them)', async () => {
    const rows = (await stack.dataSources.get('passport')!.query(`SELECT indexname FROM pg_indexes WHERE schemaname = 'passport' AND tablename = 'dropoffs' ORDER BY indexname`)) as Array<{ indexname: string }>;
    expect(rows.map((r) => r.indexname)).toEqual(['dropoffs_open_by_expiry', 'dropoffs_pkey']);
  });

  it('addresses an agent by id without a lookup once seen, and forgets it when the agent is deleted', async () => {
    const temp = ((await gw.request(PASSPORT_COMMANDS.registerAgent, { name: `temp-${randomBytes(3).toString('hex')}` }, { caller: member })) as { id: string }).id;
    await gw.request(D.create, { to_agent: temp, schema }, { caller: asAgent('writer') });
    const ds = stack.dataSources.get('passport')!;
    const reads = jest.spyOn(ds, 'query');
    try {
      await gw.request(D.create, { to_agent: temp, schema }, { caller: asAgent('writer') });
      expect(reads.mock.calls.filter(([sql]) => /FROM "?passport"?\."?agents"?/.test(String(sql)))).toHaveLength(0);
    } finally {
      reads.mockRestore();
    }
    await gw.request(PASSPORT_COMMANDS.deleteAgent, { agent_id: temp }, { caller: { ...member, scopes: [...member.scopes, 'stack:admin'] } });
    expect(await codeOf(gw.request(D.create, { to_agent: temp, schema }, { caller: asAgent('writer') }))).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('rotates the master key under deposited payloads: re-wrapped to the new key, still collected once, nothing else touched', async () => {
    const ds = stack.dataSources.get('passport')!;
    const sealed = await gw.request(D.create, { to_agent: agents.reader!, schema, payload: good }, { caller: asAgent('writer') });
    const waiting = await gw.request(D.create, { to_agent: agents.reader!, schema }, { caller: asAgent('writer') });
    const oldKeys = stack.config.masterKeys!;
    const oldKid = oldKeys.split(',')[0]!.split(':')[0]!;
    const next = Keyring.generateEntry('rot2');
    const store = new DropoffKeyStore(ds);
    const before = (await rowOf(sealed.id)).ciphertext as { kid: string; ct: string };
    expect(before.kid).toBe(oldKid);
    const report = await new KeyRotation(store, new EnvelopeCipher(Keyring.parse(`${next},${oldKeys}`))).rewrapAll();
    expect(report.failed).toBe(0);
    expect(report.rewrapped).toBeGreaterThanOrEqual(1);
    const after = (await rowOf(sealed.id)).ciphertext as { kid: string; ct: string };
    expect(after.kid).toBe('rot2');
    expect(after.ct).toBe(before.ct); // the payload's own ciphertext is untouched: only its data key is re-wrapped
    expect(await rowOf(waiting.id)).toMatchObject({ status: 'created', ciphertext: null });
    expect(Object.keys(await store.countByKey())).toEqual(['rot2']);
    // The new key alone opens it (the old one can be retired).
    const opened = await new EnvelopeCipher(Keyring.parse(next)).open({ operatorId: operator, recordId: sealed.id }, after as never);
    expect(JSON.parse(opened)).toEqual(good);
    // Put back under the running service's key, and collected as usual.
    await new KeyRotation(store, new EnvelopeCipher(Keyring.parse(`${oldKeys},${next}`))).rewrapAll();
    expect((await gw.request(D.collect, { dropoff_id: sealed.id }, { caller: asAgent('reader') })).payload).toEqual(good);
  });

  it('waits for a deposit: a collector that asks first gets the payload when it arrives', async () => {
    const created = await gw.request(D.create, { to_agent: 'reader', schema }, { caller: asAgent('writer') });
    const waiting = gw.request(D.collect, { dropoff_id: created.id, wait_seconds: 8 }, { caller: await withPassport('reader') });
    await new Promise((r) => setTimeout(r, 300));
    await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') });
    expect((await waiting).payload).toEqual(good);
  });

  it('checks a waiting collector’s passport again: revoked or expired meanwhile, it gets nothing and the payload stays deposited', async () => {
    const ds = stack.dataSources.get('passport')!;
    const cases: Array<{ code: string; meanwhile: (jti: string) => Promise<unknown> }> = [
      { code: 'PASSPORT_REVOKED', meanwhile: (jti) => gw.request(PASSPORT_COMMANDS.revokePassport, { jti }, { caller: member }) },
      // Time passes (a passport lives at least 60 s; the row is moved instead of the clock).
      { code: 'PASSPORT_EXPIRED', meanwhile: (jti) => ds.query(`UPDATE passport.passports SET expires_at = now() - interval '1 second' WHERE jti = $1`, [jti]) },
    ];
    for (const { code, meanwhile } of cases) {
      const reader = await withPassport('reader');
      const created = await gw.request(D.create, { to_agent: 'reader', schema }, { caller: asAgent('writer') });
      const waiting = codeOf(gw.request(D.collect, { dropoff_id: created.id, wait_seconds: 8 }, { caller: reader }));
      await new Promise((r) => setTimeout(r, 300));
      await meanwhile(reader.passport_jti!);
      await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') });
      expect(await waiting).toMatchObject({ code });
      const row = await rowOf(created.id);
      expect(row).toMatchObject({ status: 'deposited', collected_by: null });
      expect(row.ciphertext).not.toBeNull();
      // The recipient with a live passport still collects it.
      expect((await gw.request(D.collect, { dropoff_id: created.id }, { caller: await withPassport('reader') })).payload).toEqual(good);
    }
  });

  it('checks a waiting reader without a passport again: a member revoked meanwhile gets PASSPORT_REVOKED', async () => {
    const creator: CallerContext = { ...member, member_id: 'mem_waits' };
    const created = await gw.request(D.create, { to_agent: 'reader', schema }, { caller: creator });
    const waiting = codeOf(gw.request(D.get, { dropoff_id: created.id, wait_seconds: 8 }, { caller: creator }));
    await new Promise((r) => setTimeout(r, 300));
    const now = Date.now();
    (stack.app.get(RevocationHost, { strict: false }) as RevocationHost).state.apply({ id: `rev_${randomBytes(6).toString('hex')}`, kind: 'member', value: 'mem_waits', operator_id: operator, revoked_at_ms: now, expires_at_ms: now + 600_000 });
    await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: creator });
    expect(await waiting).toMatchObject({ code: 'PASSPORT_REVOKED' });
  });

  it('only the creator deposits, only a named agent collects, another operator sees nothing', async () => {
    const created = await gw.request(D.create, { to_agent: 'reader', schema }, { caller: asAgent('writer') });
    expect((await codeOf(gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('bystander') }))).code).toBe('FORBIDDEN');
    await gw.request(D.deposit, { dropoff_id: created.id, payload: good }, { caller: asAgent('writer') });
    expect((await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('bystander') }))).code).toBe('FORBIDDEN');
    // A member is not an agent: collecting needs the recipient's own credential.
    expect((await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: member }))).code).toBe('FORBIDDEN');
    const stranger = { ...asAgent('reader'), operator_id: 'op_other' };
    expect((await codeOf(gw.request(D.collect, { dropoff_id: created.id }, { caller: stranger }))).code).toBe('NOT_FOUND');
    expect((await codeOf(gw.request(D.get, { dropoff_id: created.id }, { caller: stranger }))).code).toBe('NOT_FOUND');
    expect((await codeOf(gw.request(D.collect, { dropoff_id: "drp_' OR 1=1 --" }, { caller: asAgent('reader') }))).code).toBe('NOT_FOUND');
    expect((await gw.request(D.collect, { dropoff_id: created.id }, { caller: asAgent('reader') })).payload).toEqual(good);
  });

  it('refuses bad input with stable codes and writes nothing', async () => {
    const count = async () => Number(((await stack.dataSources.get('passport')!.query(`SELECT count(*)::int AS n FROM passport.dropoffs`)) as Array<{ n: number }>)[0]!.n);
    const before = await count();
    const w = asAgent('writer');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema: { type: 'nope' } }, { caller: w }))).code).toBe('INVALID_SCHEMA');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema: { $ref: 'https://evil.example/schema.json' } }, { caller: w }))).code).toBe('INVALID_SCHEMA');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema: { description: 'x'.repeat(70_000) } }, { caller: w }))).code).toBe('INVALID_SCHEMA');
    expect((await codeOf(gw.request(D.create, { to_agent: 'no-such-agent', schema }, { caller: w }))).code).toBe('NOT_FOUND');
    expect((await codeOf(gw.request(D.create, { schema }, { caller: w }))).code).toBe('INVALID_REQUEST');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', to_agents: ['reader'], schema }, { caller: w }))).code).toBe('INVALID_REQUEST');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema, ttl_seconds: 90_000 }, { caller: w }))).code).toBe('INVALID_REQUEST');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema: true, payload: 'x'.repeat(600 * 1024) }, { caller: w }))).code).toBe('PAYLOAD_TOO_LARGE');
    expect((await codeOf(gw.request(D.create, { to_agent: 'reader', schema }, { caller: { ...w, scopes: ['stack:services'] } }))).code).toBe('FORBIDDEN');
    expect(await count()).toBe(before);
  });

  it('audits every step, and no audit entry or log carries the payload', async () => {
    for (let i = 0; i < 50 && !audit.some((a) => a.includes('dropoff.expire')); i++) await new Promise((r) => setTimeout(r, 100));
    const actions = new Set(audit.map((a) => (JSON.parse(a) as { action: string }).action));
    for (const a of ['dropoff.create', 'dropoff.deposit', 'dropoff.collect', 'dropoff.expire']) expect(actions).toContain(a);
    const denied = audit.map((a) => JSON.parse(a) as { action: string; outcome: string; error_code?: string }).filter((a) => a.outcome === 'denied');
    expect(denied.map((d) => d.error_code)).toEqual(expect.arrayContaining(['DROPOFF_ALREADY_COLLECTED', 'SCHEMA_VALIDATION_FAILED', 'FORBIDDEN']));
    expect(audit.join('\n')).not.toContain(SECRET_MARK);
  });
});
