export * from './caller-context-signer';
