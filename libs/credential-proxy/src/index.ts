import { createCredentialProxyService } from './credential-proxy.module';

export { createCredentialProxyService, createCredentialProxyModule } from './credential-proxy.module';
export type { CredentialProxySeams, PassportAuthority, RestCallerAuthenticator, InFlightTracker } from './caller/caller-seams';
export type { HostResolver, ResolvedAddress } from './proxy/network-guard';
export { rotateMasterKeyCommand } from './cli/rotate-master-key.command';
export { BUILTIN_CATALOG } from './catalog/builtin-catalog';

/** The credential-proxy service with its default seams (signed-context REST callers, no passports yet). */
export const credentialProxyService = createCredentialProxyService();
