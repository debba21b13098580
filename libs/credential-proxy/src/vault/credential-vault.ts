/**
 * The credential proxy's use of the vault: a connection's credential is sealed with its operator
 * and connection id as additional authenticated data, opened only in this process and only in
 * memory, and every secret string it holds is registered with the logger the moment it is
 * opened, so no log line can carry it afterwards.
 */
import { Keyring, EnvelopeCipher, type KeyEncryptionProvider, type SealedSecret } from '@stack/security';
import type { StackLogger } from '@stack/observability';

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
    private readonly logger: Pick<StackLogger, 'addSecret'>,
  ) {
    this.cipher = new EnvelopeCipher(kek);
  }

  static fromMasterKeys(masterKeys: string, logger: Pick<StackLogger, 'addSecret'>): CredentialVault {
    return new CredentialVault(Keyring.parse(masterKeys), logger);
  }

  async seal(operatorId: string, connectionId: string, credential: Credential): Promise<SealedSecret> {
    for (const s of secretStrings(credential)) this.logger.addSecret(s);
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

  private async decrypt(operatorId: string, connectionId: string, sealed: SealedSecret): Promise<Credential> {
    const credential = Object.freeze(JSON.parse(await this.cipher.open({ operatorId, recordId: connectionId }, sealed)) as Credential);
    for (const s of secretStrings(credential)) if (s.length >= 4) this.logger.addSecret(s);
    return credential;
  }
}
