/**
 * The credential proxy's use of the vault: a connection's credential is sealed with its operator
 * and connection id as additional authenticated data, opened only in this process and only in
 * memory, and every secret string it holds is registered with the logger the moment it is
 * sealed or opened, so no log line can carry it afterwards. The logger holds a connection's
 * secrets per connection: a replaced token (an upstream OAuth refresh) replaces the old ones
 * after one generation instead of piling up, and a deleted connection's are forgotten (`forget`).
 */
import { StackError } from '@stack/contracts';
import { MIN_SECRET_LENGTH, type StackLogger } from '@stack/observability';
import { Keyring, EnvelopeCipher, type KeyEncryptionProvider, type SealedSecret } from '@stack/security';

/** What a connection's sealed secret holds, by connection kind. */
export type Credential =
  | { kind: 'token'; token: string }
  | { kind: 'value'; value: string }
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'oauth2'; access_token: string; refresh_token?: string; token_type?: string };

/** The strings of a credential that must never leave the proxy, in every spelling injected (raw, base64 for basic, percent-encoded for a query parameter). */
export function secretStrings(c: Credential): string[] {
  const raw = rawSecrets(c);
  return [...new Set([...raw, ...raw.map((s) => encodeURIComponent(s))])];
}

/**
 * Shortest token, value or upstream access token accepted. Real API keys and OAuth tokens are far
 * longer; a shorter string is a typo or a test value, and registering it with the log redactor
 * would blank that text in every log line. Passwords (basic) only need one character: they are
 * sent inside base64(`username:password`), which is always long enough to register.
 */
export const MIN_TOKEN_LENGTH = 8;

/** Why a credential cannot be stored, or undefined when it can. Never names the secret. */
export function credentialProblem(c: Credential): string | undefined {
  const short = (v: unknown, min: number) => typeof v !== 'string' || v.length < min;
  switch (c.kind) {
    case 'token':
      return short(c.token, MIN_TOKEN_LENGTH) ? `token must be at least ${MIN_TOKEN_LENGTH} characters` : undefined;
    case 'value':
      return short(c.value, MIN_TOKEN_LENGTH) ? `value must be at least ${MIN_TOKEN_LENGTH} characters` : undefined;
    case 'basic':
      return short(c.username, 1) || short(c.password, 1) ? 'username and password must not be empty' : undefined;
    case 'oauth2':
      return short(c.access_token, MIN_TOKEN_LENGTH) || (c.refresh_token !== undefined && short(c.refresh_token, MIN_TOKEN_LENGTH)) ? `OAuth tokens must be strings of at least ${MIN_TOKEN_LENGTH} characters` : undefined;
  }
}

/** The strings of a credential the log redactor can hold: those long enough to register. */
function loggable(c: Credential): string[] {
  return secretStrings(c).filter((s) => s.length >= MIN_SECRET_LENGTH);
}

function rawSecrets(c: Credential): string[] {
  switch (c.kind) {
    case 'token':
      return [c.token];
    case 'value':
      return [c.value];
    case 'basic':
      return [c.password, Buffer.from(`${c.username}:${c.password}`).toString('base64')];
    case 'oauth2':
      return [c.access_token, ...(c.refresh_token ? [c.refresh_token] : [])];
  }
}

export class CredentialVault {
  readonly cipher: EnvelopeCipher;
  /**
   * What a sealed secret object opened to, for as long as that object lives (the connection
   * directory holds a row's object until the row changes): a call reuses it instead of unwrapping
   * and decrypting again. Keyed by object identity and checked against the bound record.
   */
  private readonly opened = new WeakMap<SealedSecret, { operatorId: string; connectionId: string; credential: Promise<Credential> }>();

  constructor(
    kek: KeyEncryptionProvider,
    private readonly logger: Pick<StackLogger, 'holdSecrets' | 'releaseSecrets'>,
  ) {
    this.cipher = new EnvelopeCipher(kek);
  }

  static fromMasterKeys(masterKeys: string, logger: Pick<StackLogger, 'holdSecrets' | 'releaseSecrets'>): CredentialVault {
    return new CredentialVault(Keyring.parse(masterKeys), logger);
  }

  /** Refuses a credential too short to keep out of the logs (INVALID_REQUEST), then seals it. */
  async seal(operatorId: string, connectionId: string, credential: Credential): Promise<SealedSecret> {
    const problem = credentialProblem(credential);
    if (problem) throw new StackError('INVALID_REQUEST', problem);
    this.logger.holdSecrets(owner(operatorId, connectionId), loggable(credential));
    return this.cipher.seal({ operatorId, recordId: connectionId }, JSON.stringify(credential));
  }

  async open(operatorId: string, connectionId: string, sealed: SealedSecret): Promise<Credential> {
    const memo = this.opened.get(sealed);
    if (memo && memo.operatorId === operatorId && memo.connectionId === connectionId) return memo.credential;
    const credential = this.decrypt(operatorId, connectionId, sealed);
    this.opened.set(sealed, { operatorId, connectionId, credential });
    credential.catch(() => this.opened.delete(sealed));
    return credential;
  }

  /**
   * The connection is gone: the logger forgets the secrets it held for it. A value also held by
   * another connection or configured as a secret stays redacted.
   */
  forget(operatorId: string, connectionId: string): void {
    this.logger.releaseSecrets(owner(operatorId, connectionId));
  }

  private async decrypt(operatorId: string, connectionId: string, sealed: SealedSecret): Promise<Credential> {
    const credential = Object.freeze(JSON.parse(await this.cipher.open({ operatorId, recordId: connectionId }, sealed)) as Credential);
    this.logger.holdSecrets(owner(operatorId, connectionId), loggable(credential));
    return credential;
  }
}

function owner(operatorId: string, connectionId: string): string {
  return `connection:${operatorId}:${connectionId}`;
}
