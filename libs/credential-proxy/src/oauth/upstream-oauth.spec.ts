import { randomBytes } from 'node:crypto';

import { MemoryCache, MemoryStore } from '@stack/cache';
import { REDACTED } from '@stack/observability';

import type { ConnectionRepository, ConnectionRow } from '../connections/connection.repository';
import { MemoryConnectionRepo, testGithubEntry, vaultWithMemoryLog } from '../testing/memory-connections';
import { grantedScopes, OAUTH_CONFIRM_PATH, readTokenAnswer, UpstreamOAuthManager } from './upstream-oauth';

const ENTRY = testGithubEntry({
  oauth: { authorize_url: 'https://github.test/login/oauth/authorize', token_url: 'https://github.test/login/oauth/access_token', default_scopes: ['repo', 'read:org'] },
  credential_kinds: ['oauth2'],
});
const findEntry = async (_op: string, id: string) => (id === ENTRY.service_id ? ENTRY : undefined);

/** The token endpoint answers `body` (any JSON text, `null` included) with `status`. */
function tokenEndpoint(status: number, body: string): jest.SpyInstance {
  return jest.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(body, { status, headers: { 'content-type': 'application/json' } }));
}

/** MemoryConnectionRepo whose replaceSecret also sets the status, as the SQL one does (active unless told). */
class StatusKeepingRepo extends MemoryConnectionRepo {
  override async replaceSecret(op: string, id: string, secret: ConnectionRow['secret'], expiresAt: Date | null, changes: { scopes?: readonly string[]; status?: ConnectionRow['status'] } = {}): Promise<boolean> {
    if (!(await super.replaceSecret(op, id, secret, expiresAt, changes))) return false;
    this.rows.set(id, { ...this.rows.get(id)!, status: changes.status ?? 'active' });
    return true;
  }
}

function setup(repo: MemoryConnectionRepo = new MemoryConnectionRepo()) {
  const { out, redactor, logger, vault } = vaultWithMemoryLog('warn');
  let n = 0;
  const manager = new UpstreamOAuthManager({
    repo: repo as unknown as ConnectionRepository,
    vault,
    cache: new MemoryCache({ keyPrefix: 'test', store: new MemoryStore() }),
    clients: { github: { clientId: 'stack-client', clientSecret: 'client-secret-1234' } },
    publicUrl: 'https://stack.test',
    newConnectionId: () => `scon_${++n}`,
    logger,
  });
  /** start → the confirmation page's Continue → the provider's URL and the browser's binding. */
  const begin = async (scopes?: string[], name = 'oauth') => {
    const started = await manager.start({ entry: ENTRY, operatorId: 'op_a', memberId: 'mem_a', name, scopes });
    const { pending, entry } = await manager.pending(started.state, findEntry);
    const { authorize_url, binding } = await manager.proceed(started.state, pending, entry);
    return { started, authorize_url, binding };
  };
  const connect = async (token: { status: number; body: string }, name = 'oauth') => {
    const { started, binding } = await begin(undefined, name);
    const fetchMock = tokenEndpoint(token.status, token.body);
    try {
      return await manager.complete({ code: 'the-code', state: started.state, binding, findEntry });
    } finally {
      fetchMock.mockRestore();
    }
  };
  return { repo, out, redactor, vault, manager, begin, connect };
}

const token = () => `gho_${randomBytes(12).toString('hex')}`;

afterEach(() => jest.restoreAllMocks());

describe('UpstreamOAuthManager: the authorization is bound to the browser that continues it', () => {
  it('start answers STACK’s confirmation page, never the provider’s URL', async () => {
    const { manager } = setup();
    const started = await manager.start({ entry: ENTRY, operatorId: 'op_a', memberId: 'mem_a', name: 'oauth' });
    const url = new URL(started.url);
    expect(url.origin + url.pathname).toBe(`https://stack.test${OAUTH_CONFIRM_PATH}`);
    expect(started.authorize_url).toBe(started.url);
    expect(url.searchParams.get('state')).toBe(started.state);
    const { pending } = await manager.pending(started.state, findEntry);
    expect(pending).toMatchObject({ operator_id: 'op_a', member_id: 'mem_a', name: 'oauth', scopes: ['repo', 'read:org'] });
  });

  it('Continue gives the provider URL (PKCE, state) once; a second Continue is refused', async () => {
    const { manager, begin } = setup();
    const { started, authorize_url } = await begin();
    const provider = new URL(authorize_url);
    expect(provider.origin).toBe('https://github.test');
    expect(provider.searchParams.get('state')).toBe(started.state);
    expect(provider.searchParams.get('code_challenge_method')).toBe('S256');
    expect(provider.searchParams.get('scope')).toBe('repo read:org');
    const { pending, entry } = await manager.pending(started.state, findEntry);
    await expect(manager.proceed(started.state, pending, entry)).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('a callback without the binding, or with another one, stores nothing and leaves the authorization usable', async () => {
    const { manager, repo, begin } = setup();
    const { started, binding } = await begin();
    const fetchMock = tokenEndpoint(200, JSON.stringify({ access_token: token(), token_type: 'bearer' }));
    for (const other of [undefined, '', 'not-the-binding']) {
      await expect(manager.complete({ code: 'the-code', state: started.state, binding: other, findEntry })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    }
    expect(fetchMock).not.toHaveBeenCalled();
    expect(repo.rows.size).toBe(0);
    await manager.complete({ code: 'the-code', state: started.state, binding, findEntry });
    expect(repo.rows.size).toBe(1);
    await expect(manager.complete({ code: 'the-code', state: started.state, binding, findEntry })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('a callback whose state never went through Continue is refused', async () => {
    const { manager, repo } = setup();
    const started = await manager.start({ entry: ENTRY, operatorId: 'op_a', memberId: 'mem_a', name: 'oauth' });
    await expect(manager.complete({ code: 'the-code', state: started.state, binding: 'anything', findEntry })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(repo.rows.size).toBe(0);
  });
});

describe('UpstreamOAuthManager: a name already taken', () => {
  it('is refused at start, before the human goes through the provider', async () => {
    const { manager, connect } = setup();
    await connect({ status: 200, body: JSON.stringify({ access_token: token(), refresh_token: token(), expires_in: 3600 }) });
    await expect(manager.start({ entry: ENTRY, operatorId: 'op_a', memberId: 'mem_a', name: 'oauth' })).rejects.toMatchObject({ code: 'INVALID_REQUEST', details: { reason: 'name_taken' } });
    // Another operator's name is its own.
    await expect(manager.start({ entry: ENTRY, operatorId: 'op_b', memberId: 'mem_b', name: 'oauth' })).resolves.toBeDefined();
  });

  it('a connection marked needs_reauth is authorised again in place: same id, new tokens, active', async () => {
    const { manager, repo, connect, vault } = setup(new StatusKeepingRepo());
    const row = await connect({ status: 200, body: JSON.stringify({ access_token: token(), refresh_token: token(), expires_in: 30 }) });
    // The provider refuses the refresh: needs_reauth.
    tokenEndpoint(400, JSON.stringify({ error: 'invalid_grant' }));
    await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ details: { reason: 'needs_reauth' } });
    jest.restoreAllMocks();
    expect(repo.rows.get(row.id)!.status).toBe('needs_reauth');
    // A member connects it again under the same name.
    const fresh = token();
    const again = await connect({ status: 200, body: JSON.stringify({ access_token: fresh, refresh_token: token(), expires_in: 3600, scope: 'repo' }) });
    expect(again.id).toBe(row.id);
    expect(repo.rows.size).toBe(1);
    const stored = repo.rows.get(row.id)!;
    expect(stored).toMatchObject({ status: 'active', scopes: ['repo'] });
    expect(await manager.credential(stored, ENTRY)).toMatchObject({ kind: 'oauth2', access_token: fresh });
    expect(await vault.open('op_a', row.id, stored.secret)).toMatchObject({ access_token: fresh });
  });
});

describe('UpstreamOAuthManager: token answers of odd shapes', () => {
  it('accepts expires_in as a numeric string', async () => {
    const { connect } = setup();
    const before = Date.now();
    const row = await connect({ status: 200, body: JSON.stringify({ access_token: token(), refresh_token: token(), expires_in: '3600' }) });
    expect(row.expires_at).not.toBeNull();
    expect(row.expires_at!.getTime()).toBeGreaterThanOrEqual(before + 3_599_000);
  });

  it('a 200 with body null completes nothing: UPSTREAM_ERROR, not INTERNAL_ERROR', async () => {
    const { connect, repo } = setup();
    await expect(connect({ status: 200, body: 'null' })).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
    expect(repo.rows.size).toBe(0);
  });

  it('refuses an access_token that is not a string (UPSTREAM_ERROR), storing nothing', async () => {
    const { connect, repo } = setup();
    for (const access_token of [12345678901, { t: 'x' }, ['gho_abcdefgh'], 'short']) {
      await expect(connect({ status: 200, body: JSON.stringify({ access_token, token_type: 'bearer' }) })).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
    }
    expect(repo.rows.size).toBe(0);
  });

  it('stores the granted scopes (space- or comma-separated); without `scope`, the ones asked for', async () => {
    const { connect } = setup();
    expect((await connect({ status: 200, body: JSON.stringify({ access_token: token(), scope: 'repo gist' }) })).scopes).toEqual(['repo', 'gist']);
    expect((await connect({ status: 200, body: JSON.stringify({ access_token: token(), scope: 'repo,read:org' }) }, 'oauth-2')).scopes).toEqual(['repo', 'read:org']);
    expect((await connect({ status: 200, body: JSON.stringify({ access_token: token() }) }, 'oauth-3')).scopes).toEqual(['repo', 'read:org']);
    expect(grantedScopes('channels:read,chat:write', ',')).toEqual(['channels:read', 'chat:write']);
    expect(grantedScopes('a|b c', '|')).toEqual(['a', 'b', 'c']);
  });

  describe('on refresh', () => {
    async function due() {
      const s = setup();
      const row = await s.connect({ status: 200, body: JSON.stringify({ access_token: token(), refresh_token: token(), expires_in: 30 }) });
      return { ...s, row };
    }

    it('a 200 with body null: UPSTREAM_ERROR and the connection kept, as for an outage', async () => {
      const { manager, repo, row } = await due();
      tokenEndpoint(200, 'null');
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
      expect(repo.statuses).toEqual([]);
      expect(repo.rows.get(row.id)!.status).toBe('active');
    });

    it('a non-string access_token: UPSTREAM_ERROR, the old credential kept', async () => {
      const { manager, repo, row } = await due();
      tokenEndpoint(200, JSON.stringify({ access_token: 42, expires_in: 3600 }));
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
      expect(repo.rows.get(row.id)!.secret).toBe(row.secret);
    });

    it.each([
      ['a 404 page (the token endpoint moved or is misconfigured)', 404, '<html>not found</html>'],
      ['a redirect', 302, ''],
      ['a 400 with no OAuth error', 400, '{}'],
      ['invalid_request (a request the provider could not read)', 400, JSON.stringify({ error: 'invalid_request' })],
      ['unsupported_grant_type', 400, JSON.stringify({ error: 'unsupported_grant_type' })],
      ['a 200 carrying an error that is not about the grant', 200, JSON.stringify({ ok: false, error: 'ratelimited' })],
    ])('%s is not the grant refused: UPSTREAM_ERROR, the connection kept', async (_what, status, body) => {
      const { manager, repo, row } = await due();
      tokenEndpoint(status, body);
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'UPSTREAM_ERROR', details: { upstream_status: status } });
      expect(repo.statuses).toEqual([]);
      expect(repo.rows.get(row.id)!.status).toBe('active');
      expect(repo.rows.get(row.id)!.secret).toBe(row.secret);
    });

    it.each(['invalid_grant', 'bad_refresh_token', 'token_revoked'])('%s (the grant is gone) marks needs_reauth', async (error) => {
      const { manager, repo, row } = await due();
      tokenEndpoint(400, JSON.stringify({ error }));
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'needs_reauth' } });
      expect(repo.statuses).toEqual(['needs_reauth']);
    });

    it('a 200 carrying an OAuth error (Slack answers so) is a refusal: needs_reauth', async () => {
      const { manager, repo, row } = await due();
      tokenEndpoint(200, JSON.stringify({ ok: false, error: 'invalid_refresh_token' }));
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'FORBIDDEN', details: { reason: 'needs_reauth' } });
      expect(repo.statuses).toEqual(['needs_reauth']);
    });

    it('STACK’s client refused (invalid_client, GitHub’s incorrect_client_credentials): UPSTREAM_ERROR, the connection kept', async () => {
      const { manager, repo, row } = await due();
      for (const [status, error] of [[401, 'invalid_client'], [200, 'incorrect_client_credentials'], [400, 'unauthorized_client']] as const) {
        tokenEndpoint(status, JSON.stringify({ error }));
        await expect(manager.credential(repo.rows.get(row.id)!, ENTRY)).rejects.toMatchObject({ code: 'UPSTREAM_ERROR' });
        jest.restoreAllMocks();
      }
      expect(repo.statuses).toEqual([]);
      expect(repo.rows.get(row.id)!.secret).toBe(row.secret);
      // Once the deployment's client is fixed, the same refresh token still works.
      const fresh = token();
      tokenEndpoint(200, JSON.stringify({ access_token: fresh, expires_in: 3600 }));
      expect(await manager.credential(repo.rows.get(row.id)!, ENTRY)).toMatchObject({ access_token: fresh });
    });

    it('a refreshed token the database did not take is not lost: the next refresh stores it instead of spending the retired refresh token', async () => {
      const { manager, repo, row, vault } = await due();
      // The provider rotates refresh tokens: each refresh token works once.
      const first = token();
      let current = (await vault.open('op_a', row.id, row.secret)) as { refresh_token: string };
      let valid = current.refresh_token;
      const issued: string[] = [];
      const fetchMock = jest.spyOn(globalThis, 'fetch').mockImplementation(async (_url, init) => {
        const rt = new URLSearchParams(String(init!.body)).get('refresh_token');
        if (rt !== valid) return new Response(JSON.stringify({ error: 'invalid_grant' }), { status: 400, headers: { 'content-type': 'application/json' } });
        valid = token();
        const access = issued.length ? token() : first;
        issued.push(access);
        return new Response(JSON.stringify({ access_token: access, refresh_token: valid, expires_in: 3600 }), { status: 200, headers: { 'content-type': 'application/json' } });
      });
      // The database fails once, just as the refreshed tokens are written.
      const replace = jest.spyOn(repo, 'replaceSecret').mockRejectedValueOnce(new Error('connection terminated'));
      await expect(manager.credential(row, ENTRY)).rejects.toThrow('connection terminated');
      expect(repo.rows.get(row.id)!.secret).toBe(row.secret);
      // The database is back: the next call stores the tokens already got, without asking the provider again.
      expect(await manager.credential(repo.rows.get(row.id)!, ENTRY)).toMatchObject({ access_token: first });
      expect(fetchMock).toHaveBeenCalledTimes(1);
      expect(replace).toHaveBeenCalledTimes(2);
      const stored = repo.rows.get(row.id)!;
      expect(stored.status).toBe('active');
      current = (await vault.open('op_a', row.id, stored.secret)) as { refresh_token: string };
      expect(current.refresh_token).toBe(valid);
      expect(stored.expires_at!.getTime()).toBeGreaterThan(Date.now() + 3_500_000);
    });

    it('a refusal that another replica’s refresh overtook (its lock outlived ours) does not mark needs_reauth: its tokens are used', async () => {
      const s = setup(new StatusKeepingRepo());
      const row = await s.connect({ status: 200, body: JSON.stringify({ access_token: token(), refresh_token: token(), expires_in: 30 }) });
      const { manager, repo, vault } = s;
      // setStatus honours `ifSecretCt` and says whether it changed the row, as the SQL one does.
      const setStatus = repo.setStatus.bind(repo);
      const conditional = async (op: string, id: string, status: ConnectionRow['status'], options: { ifSecretCt?: string } = {}): Promise<boolean> => {
        if (options.ifSecretCt !== undefined && repo.rows.get(id)?.secret.ct !== options.ifSecretCt) return false;
        await setStatus(op, id, status);
        return true;
      };
      jest.spyOn(repo, 'setStatus').mockImplementation(conditional as unknown as typeof repo.setStatus);
      const theirs = token();
      jest.spyOn(globalThis, 'fetch').mockImplementation(async () => {
        // Meanwhile the other replica refreshed with the same refresh token and stored its answer; the provider retired ours.
        const sealed = await vault.seal('op_a', row.id, { kind: 'oauth2', access_token: theirs, refresh_token: token() });
        await repo.replaceSecret('op_a', row.id, sealed, new Date(Date.now() + 3_600_000));
        return new Response(JSON.stringify({ error: 'invalid_grant' }), { status: 400, headers: { 'content-type': 'application/json' } });
      });
      expect(await manager.credential(row, ENTRY)).toMatchObject({ access_token: theirs });
      expect(repo.rows.get(row.id)!.status).toBe('active');
      expect(repo.statuses).toEqual([]);
    });

    it('expires_in as a numeric string sets the next expiry', async () => {
      const { manager, repo, row } = await due();
      const fresh = token();
      tokenEndpoint(200, JSON.stringify({ access_token: fresh, expires_in: '7200' }));
      expect(await manager.credential(row, ENTRY)).toMatchObject({ kind: 'oauth2', access_token: fresh });
      expect(repo.rows.get(row.id)!.expires_at!.getTime()).toBeGreaterThan(Date.now() + 7_000_000);
    });

    it('a `scope` in the answer replaces the stored scopes (narrowed or widened); none keeps them', async () => {
      const { manager, repo, row } = await due();
      expect(row.scopes).toEqual(['repo', 'read:org']);
      tokenEndpoint(200, JSON.stringify({ access_token: token(), expires_in: 30, scope: 'repo' }));
      await manager.credential(repo.rows.get(row.id)!, ENTRY);
      expect(repo.rows.get(row.id)!.scopes).toEqual(['repo']);
      tokenEndpoint(200, JSON.stringify({ access_token: token(), expires_in: 30 }));
      await manager.credential(repo.rows.get(row.id)!, ENTRY);
      expect(repo.rows.get(row.id)!.scopes).toEqual(['repo']);
      tokenEndpoint(200, JSON.stringify({ access_token: token(), expires_in: 30, scope: 'repo,gist,read:org' }));
      await manager.credential(repo.rows.get(row.id)!, ENTRY);
      expect(repo.rows.get(row.id)!.scopes).toEqual(['repo', 'gist', 'read:org']);
    });

    it('a connection deleted while its refresh ran: NOT_FOUND, and the new tokens leave the log redactor', async () => {
      const { manager, repo, redactor, row } = await due();
      const fresh = token();
      const freshRefresh = token();
      jest.spyOn(globalThis, 'fetch').mockImplementation(async () => {
        repo.rows.delete(row.id);
        return new Response(JSON.stringify({ access_token: fresh, refresh_token: freshRefresh, expires_in: 3600 }), { status: 200, headers: { 'content-type': 'application/json' } });
      });
      await expect(manager.credential(row, ENTRY)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(redactor.redact(`${fresh} ${freshRefresh}`)).toBe(`${fresh} ${freshRefresh}`);
      expect(redactor.redact(fresh)).not.toBe(REDACTED);
    });
  });

  it('readTokenAnswer keeps only well-typed fields', () => {
    expect(readTokenAnswer(null)).toEqual({ body: {}, unusable: 'the answer is not a JSON object' });
    expect(readTokenAnswer([1]).unusable).toBeDefined();
    expect(readTokenAnswer({ access_token: 'gho_abcdefgh', expires_in: 'soon', token_type: 7 })).toEqual({ body: { access_token: 'gho_abcdefgh', error: undefined } });
  });
});
