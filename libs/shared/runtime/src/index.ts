export * from './service-definition';
export * from './start-stack';
export { ProcessState } from './process-state';
export { StackErrorFilter, toStackError } from './stack-error.filter';
export { runCli, type CliCommand, type RunCliOptions } from './cli';
export { AuditRecorder, auditEventPayload, newAuditId, type AuditEntryInput, type AuditEventPayload } from './audit-recorder';
export { RevocationModule, RevocationHost, busRevocationFeed, type LocalRevocationSnapshot } from './revocation.module';
export { Credentials, CredentialsModule, bearerOf, jwtTyp, type CredentialKind, type ResolvedCredential, type Resource } from './credentials.module';
export { withServiceDatabases, definitionOf, type ServiceDatabase } from './service-databases';
