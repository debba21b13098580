export * from './services';
export * from './errors/error-codes';
export * from './bus/definitions';
export * from './bus/headers';
export * from './bus/caller-context';
export * from './bus/system';
export * from './bus/events';
export * from './bus/registry';
