export * from './service-definition';
export * from './start-stack';
export { ProcessState } from './process-state';
export { StackErrorFilter, toStackError } from './stack-error.filter';
export { runCli, type CliCommand, type RunCliOptions } from './cli';
