export * from './bus';
export * from './connection';
