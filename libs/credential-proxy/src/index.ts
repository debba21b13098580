import { createCredentialProxyService } from './credential-proxy.module';

export { createCredentialProxyService, createCredentialProxyModule } from './credential-proxy.module';
export type { CredentialProxySeams, PassportAuthority, RestCallerAuthenticator, InFlightTracker } from './caller/caller-seams';
export type { HostResolver, ResolvedAddress } from '@stack/security';
export { rotateMasterKeyCommand } from './cli/rotate-master-key.command';
export { BUILTIN_CATALOG } from './catalog/builtin-catalog';

/** The credential-proxy service with STACK's own seams (API keys, access tokens and signed caller contexts for REST; passports checked by this node). */
export const credentialProxyService = createCredentialProxyService();
